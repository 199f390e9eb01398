// Package auth verifies the JWT a client presents and turns it into a
// Principal: the tenant (account), the home region and the subject.
//
// A Verifier is built once from config.Auth by NewVerifier and is immutable
// and safe for concurrent use; hot reload swaps a whole *Verifier. Its
// Authenticate method satisfies proxy.Authenticator.
//
// Verification rules:
//
//   - Tokens over MaxTokenBytes are rejected before any parsing.
//   - Only the configured algorithms are accepted ("none", in any spelling,
//     never is). Keys are bound to their algorithm family: the HMAC secret
//     verifies only HS*, RSA keys only RS*/PS*, ECDSA keys only ES* of their
//     own curve, Ed25519 keys only EdDSA. A public key is never used as an
//     HMAC secret, so the classic RS256/HS256 confusion attack fails.
//   - Keys come from the HMAC secret, PEM files (PKIX "PUBLIC KEY", PKCS#1
//     "RSA PUBLIC KEY" or "CERTIFICATE" blocks; a certificate is only a key
//     container, its dates and chain are not checked), a JWKS file, and a
//     JWKS fetched from auth.jwks_url or found by OIDC discovery on
//     auth.issuer (remote.go: https only, loopback excepted; cached by
//     jwkset, refreshed in the background, refetched at most once per
//     interval for an unknown kid, and kept when the provider fails). Keys
//     are never fetched from URLs a token names: header parameters such as
//     jku, x5u and jwk are ignored; a token carrying "crit" is rejected.
//   - A token that names a kid is verified only with the JWKS key of that kid;
//     an unknown kid is rejected (PEM keys and the HMAC secret have no kid, so
//     they verify only tokens without one). A token without a kid is tried
//     against every key usable for its algorithm.
//   - exp is required; exp, nbf and iat are checked with the configured
//     leeway; iss and aud are checked when configured.
//   - The payload must be a JSON object without duplicate members (encoding/json
//     would silently keep the last one, other parsers the first).
//   - The tenant claim may be a JSON string or a non-negative JSON integer;
//     an integer is kept as its exact decimal text, never rounded through
//     float64. A string is kept verbatim, but one that PostgreSQL's numeric
//     input reads as a number must be its canonical decimal text: "042",
//     "+42", " 42", "42.0" and "4.2e1" are rejected, so one tenant never has
//     several ids (an integer tenant column reads them all as 42). Fractions,
//     exponents, negatives, empty values, values over MaxClaimBytes and
//     control characters are rejected. The region must be a non-empty string;
//     the subject is optional.
//
// Access (access.go): the role claim (a string or an array of strings) and,
// for support sessions, the actor claim (RFC 8693 act), purpose, ticket and
// a lifetime within access.support.max_ttl are read into the Principal,
// which also says whether the session is read-only.
//
// Every failure is an *Error whose Reason is a short stable code for metrics
// and whose message starts with "pgtenant: " and never quotes the token.
package auth
