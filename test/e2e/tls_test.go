package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, returning their paths.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "pgtenant-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSRequired(t *testing.T) {
	cert, key := selfSigned(t)
	env := proxytest.Start(t, proxytest.Options{Configure: func(c *config.Config) {
		c.TLS = config.TLS{CertFile: cert, KeyFile: key, Require: true}
	}})
	ctx := ctxT(t)
	tlsDSN := strings.Replace(env.DSN(t, "42", "eu-west"), "sslmode=disable", "sslmode=require", 1)
	conn, err := pgx.Connect(ctx, tlsDSN)
	if err != nil {
		t.Fatalf("TLS connection: %v", err)
	}
	defer conn.Close(ctx)
	if conn.PgConn().Conn().(*tls.Conn).ConnectionState().Version < tls.VersionTLS12 {
		t.Error("negotiated a TLS version below 1.2")
	}
	var account string
	if err := conn.QueryRow(ctx, "SELECT current_setting('app.current_account_id')").Scan(&account); err != nil || account != "42" {
		t.Fatalf("query over TLS: %q, %v", account, err)
	}
	_, err = pgx.Connect(ctx, env.DSN(t, "42", "eu-west"))
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "TLS is required") {
		t.Fatalf("plaintext client: got %v, want FATAL 28000 saying TLS is required", err)
	}
	// A client offering only TLS 1.1 is refused.
	raw, err := net.Dial("tcp", env.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}) // SSLRequest
	reply := make([]byte, 1)
	if _, err := raw.Read(reply); err != nil || reply[0] != 'S' {
		t.Fatalf("SSLRequest answer %q, %v", reply, err)
	}
	old := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}) //nolint:gosec // the point of the test
	_ = old.SetDeadline(time.Now().Add(5 * time.Second))
	if err := old.Handshake(); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}
