package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// serverCertSerial performs an SSLRequest and a TLS handshake with the proxy
// and returns the serial number of the certificate it presents.
func serverCertSerial(t *testing.T, addr string) string {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 1)
	if _, err := raw.Read(reply); err != nil || reply[0] != 'S' {
		t.Fatalf("SSLRequest answer %q, %v", reply, err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test inspects the certificate itself
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func certSerial(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

// A rotated certificate is served to new connections after SIGHUP; a
// plaintext client is refused with a clear FATAL throughout.
func TestServeReloadsTLSCertificateOnSIGHUP(t *testing.T) {
	c := pgtest.Shared(t, "eu-west")
	proxytest.InstallDemo(t, c)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	install := func() string {
		cf, kf := selfSigned(t)
		for src, dst := range map[string]string{cf: certFile, kf: keyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return certSerial(t, certFile)
	}
	first := install()
	listen := freeAddr(t)
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	body := serveConfig(c, listen, dir, "SECRET") +
		fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n  require: true\n", certFile, keyFile)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, cfgPath, listen, "SECRET="+strings.Repeat("s", 32))
	if got := serverCertSerial(t, listen); got != first {
		t.Fatalf("serving certificate %s, want %s", got, first)
	}
	second := install()
	if second == first {
		t.Fatal("test setup: the new certificate has the same serial")
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return serverCertSerial(t, listen) == second }, srv)
}
