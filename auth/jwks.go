package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"strings"
)

// maxJWKSBytes bounds the JWKS file read at start-up.
const maxJWKSBytes = 1 << 20

// jwk holds the members of a JSON Web Key (RFC 7517, 7518, 8037) that the
// verifier reads.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	Alg    string   `json:"alg"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	D      string   `json:"d"`
	K      string   `json:"k"`
}

// loadJWKSFile reads the signature-verification keys of a JWKS document.
func loadJWKSFile(path string) ([]publicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth.jwks_file: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxJWKSBytes+1)); err != nil {
		return nil, fmt.Errorf("auth.jwks_file: %s: %w", path, err)
	}
	if buf.Len() > maxJWKSBytes {
		return nil, fmt.Errorf("auth.jwks_file: %s: larger than %d bytes", path, maxJWKSBytes)
	}
	keys, err := parseJWKS(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("auth.jwks_file: %s: %w", path, err)
	}
	for i := range keys {
		keys[i].source = path
	}
	return keys, nil
}

// parseJWKS parses a JWKS document. Keys for encryption ("use":"enc", or
// key_ops without "verify") and keys of types the verifier does not support
// for signatures (X25519, X448, Ed448) are skipped; a malformed key, a
// private or symmetric key, or a duplicate kid is an error, as is a set with
// no usable key.
func parseJWKS(data []byte) ([]publicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	var keys []publicKey
	seen := map[string]bool{}
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		name := fmt.Sprintf("key %d", i)
		if k.Kid != "" {
			name = fmt.Sprintf("key %d (kid %q)", i, k.Kid)
		}
		pk, ok, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !ok {
			continue
		}
		if k.Kid != "" {
			if seen[k.Kid] {
				return nil, fmt.Errorf("%s: duplicate kid", name)
			}
			seen[k.Kid] = true
		}
		keys = append(keys, pk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no signature verification key (RSA, EC P-256/384/521 or OKP Ed25519) in the set")
	}
	return keys, nil
}

// publicKey converts k; ok is false for a key the verifier skips.
func (k jwk) publicKey() (publicKey, bool, error) {
	if k.D != "" {
		return publicKey{}, false, errors.New("contains private key material (d); publish only public keys")
	}
	if k.Use != "" && k.Use != "sig" {
		return publicKey{}, false, nil
	}
	if k.KeyOps != nil && !slices.Contains(k.KeyOps, "verify") {
		return publicKey{}, false, nil
	}
	if k.Alg != "" {
		if _, known := algorithms[k.Alg]; !known {
			return publicKey{}, false, nil // an encryption or unsupported algorithm
		}
	}
	var (
		key any
		err error
	)
	switch k.Kty {
	case "RSA":
		key, err = k.rsaKey()
	case "EC":
		key, err = k.ecKey()
	case "OKP":
		if k.Crv != "Ed25519" {
			return publicKey{}, false, nil
		}
		var x []byte
		if x, err = b64(k.X, "x"); err == nil {
			key = ed25519.PublicKey(x)
		}
	case "oct":
		return publicKey{}, false, errors.New("symmetric (oct) keys are not read from jwks_file; use auth.hs256_secret_env or hs256_secret_file")
	default:
		return publicKey{}, false, nil
	}
	if err != nil {
		return publicKey{}, false, err
	}
	if key, err = checkPublicKey(key); err != nil {
		return publicKey{}, false, err
	}
	pk := publicKey{key: key, kid: k.Kid, alg: k.Alg}
	if k.Alg != "" && !pk.usableFor(k.Alg) {
		return publicKey{}, false, fmt.Errorf("alg %s does not fit a %s key", k.Alg, k.Kty)
	}
	return pk, true, nil
}

func (k jwk) rsaKey() (*rsa.PublicKey, error) {
	n, err := b64(k.N, "n")
	if err != nil {
		return nil, err
	}
	e, err := b64(k.E, "e")
	if err != nil {
		return nil, err
	}
	if len(e) > 4 {
		return nil, errors.New("RSA exponent e is too large")
	}
	exp := 0
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
}

func (k jwk) ecKey() (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch k.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("unsupported EC curve %q", k.Crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err := b64(k.X, "x")
	if err != nil {
		return nil, err
	}
	y, err := b64(k.Y, "y")
	if err != nil {
		return nil, err
	}
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("EC coordinates must be %d bytes each for %s", size, k.Crv)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	key, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("invalid EC point: %w", err)
	}
	return key, nil
}

// b64 decodes a base64url member, tolerating padding that some issuers emit.
func b64(s, member string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("member %s is missing", member)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("member %s is not base64url: %w", member, err)
	}
	return b, nil
}
