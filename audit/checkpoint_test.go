package audit

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestKeysFromOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "seal.pem"), filepath.Join(dir, "seal.pub")
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", priv).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v: %s", err, out)
	}
	if out, err := exec.Command(openssl, "pkey", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v: %s", err, out)
	}
	key, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	c := Checkpoint{ChainID: "a1", Region: "eu-west", Size: 1, Head: make([]byte, 32), TS: time.Now()}
	c.Sign(key)
	if err := c.Verify(pk); err != nil {
		t.Fatalf("a checkpoint signed with openssl's key does not verify with its public key: %v", err)
	}
	if _, err := LoadPrivateKey(pub); err == nil {
		t.Error("a public key was accepted as the sealing key")
	}
}
