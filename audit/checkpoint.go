package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Checkpoint is a signed statement that chain ChainID of Region had Size
// rows with entry hash Head at seq Size, at time TS.
type Checkpoint struct {
	ChainID   string    `json:"chain_id"`
	Region    string    `json:"region"`
	Size      int64     `json:"size"`
	Head      HexBytes  `json:"head"`
	TS        time.Time `json:"ts"`
	KeyID     string    `json:"key_id"`
	Signature HexBytes  `json:"signature"`
}

// HexBytes marshals as a hex string.
type HexBytes []byte

// MarshalJSON encodes b as a hex string.
func (b HexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(b)) }

// UnmarshalJSON decodes a hex string.
func (b *HexBytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

const tagCheckpoint = 0x30

// SignedMessage is what the Ed25519 signature covers:
// 0x30 || lp(region) || lp(chain_id) || size int64 BE || lp(head) ||
// ts as int64 microseconds BE || lp(key_id).
func (c *Checkpoint) SignedMessage() []byte {
	e := encoder{}
	e.buf = append(e.buf, tagCheckpoint)
	for _, s := range []string{c.Region, c.ChainID} {
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(s)))
		e.buf = append(e.buf, s...)
	}
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(c.Size))
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(c.Head)))
	e.buf = append(e.buf, c.Head...)
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(c.TS.UnixMicro()))
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(c.KeyID)))
	e.buf = append(e.buf, c.KeyID...)
	return e.buf
}

// Sign fills KeyID and Signature.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	c.TS = c.TS.Truncate(time.Microsecond).UTC()
	c.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	c.Signature = ed25519.Sign(key, c.SignedMessage())
}

// Verify checks the signature with pub.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) error {
	if id := KeyID(pub); c.KeyID != id {
		return fmt.Errorf("signed by key %s, verifying with key %s", c.KeyID, id)
	}
	if !ed25519.Verify(pub, c.SignedMessage(), c.Signature) {
		return errors.New("signature does not verify")
	}
	return nil
}

// KeyID names a public key: the first 16 hex digits of SHA-256 over its
// PKIX (SubjectPublicKeyInfo) DER encoding.
func KeyID(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

// LoadPrivateKey reads an Ed25519 private key in PKCS#8 PEM, as
// `openssl genpkey -algorithm ed25519` writes it.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key (%T)", path, k)
	}
	return ek, nil
}

// LoadPublicKey reads an Ed25519 public key in PKIX PEM ("PUBLIC KEY", as
// `openssl pkey -pubout` writes it); a PKCS#8 private key file is accepted too.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	switch blk.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pk, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an Ed25519 key (%T)", path, k)
		}
		return pk, nil
	case "PRIVATE KEY":
		k, err := LoadPrivateKey(path)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("%s: PEM block %q is not a PUBLIC KEY", path, blk.Type)
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no %q PEM block", path, typ)
	}
	return blk.Bytes, nil
}

// checkpointFile is where external copies of a chain's checkpoints live:
// DIR/<region>/<chain, path-escaped>.jsonl, one Checkpoint per line.
func checkpointFile(dir, region, chain string) string {
	return filepath.Join(dir, url.PathEscape(region), url.PathEscape(chain)+".jsonl")
}

// appendExternal appends c to its external copy and fsyncs it.
func appendExternal(dir string, c Checkpoint) error {
	path := checkpointFile(dir, c.Region, c.ChainID)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readExternal returns every checkpoint copied to dir for region, by chain.
func readExternal(dir, region string) (map[string][]Checkpoint, error) {
	out := map[string][]Checkpoint{}
	if dir == "" {
		return out, nil
	}
	rdir := filepath.Join(dir, url.PathEscape(region))
	entries, err := os.ReadDir(rdir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".jsonl" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(rdir, e.Name()))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var c Checkpoint
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				return nil, fmt.Errorf("%s line %d: %w", e.Name(), n, err)
			}
			out[c.ChainID] = append(out[c.ChainID], c)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return out, nil
}
