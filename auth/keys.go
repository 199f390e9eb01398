package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// family is the kind of key an algorithm needs.
type family int

const (
	familyHMAC family = iota + 1
	familyRSA
	familyECDSA
	familyEd25519
)

// algorithms maps every JWS algorithm the verifier supports to its key
// family; for ES* it also fixes the curve.
var algorithms = map[string]struct {
	family family
	curve  elliptic.Curve
}{
	"HS256": {family: familyHMAC},
	"HS384": {family: familyHMAC},
	"HS512": {family: familyHMAC},
	"RS256": {family: familyRSA},
	"RS384": {family: familyRSA},
	"RS512": {family: familyRSA},
	"PS256": {family: familyRSA},
	"PS384": {family: familyRSA},
	"PS512": {family: familyRSA},
	"ES256": {family: familyECDSA, curve: elliptic.P256()},
	"ES384": {family: familyECDSA, curve: elliptic.P384()},
	"ES512": {family: familyECDSA, curve: elliptic.P521()},
	"EdDSA": {family: familyEd25519},
}

// RSA modulus bounds for configured keys: below 2048 bits is too weak, above
// 16384 makes every verification a denial of service.
const (
	minRSABits = 2048
	maxRSABits = 16384
)

// publicKey is one verification key with the constraints on its use.
type publicKey struct {
	// key is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	key any
	// kid is the JWKS key id ("" for PEM keys and JWKS keys without one).
	kid string
	// alg, when set (JWKS "alg"), is the only algorithm the key may verify.
	alg string
	// source names where the key came from, for configuration errors.
	source string
}

// usableFor reports whether k may verify a token signed with alg.
func (k publicKey) usableFor(alg string) bool {
	a, ok := algorithms[alg]
	if !ok || (k.alg != "" && k.alg != alg) {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		return a.family == familyRSA
	case *ecdsa.PublicKey:
		return a.family == familyECDSA && key.Curve == a.curve
	case ed25519.PublicKey:
		return a.family == familyEd25519
	}
	return false
}

// checkPublicKey accepts only the key types and sizes the verifier supports.
func checkPublicKey(key any) (any, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("the RSA key has %d bits; need %d to %d", bits, minRSABits, maxRSABits)
		}
		if k.E < 3 || k.E%2 == 0 || k.E > 1<<31-1 {
			return nil, fmt.Errorf("the RSA key has an invalid public exponent %d", k.E)
		}
		return k, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("the ECDSA key uses unsupported curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("the Ed25519 key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return k, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", key)
}

// loadPEMFile reads every public key in a PEM file.
func loadPEMFile(path string) ([]publicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth.public_keys: %w", err)
	}
	keys, err := parsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("auth.public_keys: %s: %w", path, err)
	}
	for i := range keys {
		keys[i].source = path
	}
	return keys, nil
}

// parsePEM parses PKIX public keys, PKCS#1 RSA public keys and certificates;
// private keys and anything else are errors.
func parsePEM(data []byte) ([]publicKey, error) {
	var keys []publicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return nil, fmt.Errorf("PEM block %d is a private key (%s); configure only the public key", n, block.Type)
		default:
			return nil, fmt.Errorf("PEM block %d has unsupported type %q", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		if key, err = checkPublicKey(key); err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		keys = append(keys, publicKey{key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key or certificate found")
	}
	return keys, nil
}
