package bridge

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing or verification key with its pinned algorithm and its
// key ID, the RFC 7638 thumbprint of its public part. A Key made from a
// private key can sign; one made from a public key only verifies.
type Key struct {
	kid    string
	alg    string
	method jwt.SigningMethod
	sign   any // private key or HMAC secret; nil for verify-only keys
	verify any // public key or HMAC secret
	jwk    *jwkset.JWKMarshal
}

// KID returns the key ID.
func (k *Key) KID() string { return k.kid }

// Algorithm returns the key's pinned algorithm: ES256, EdDSA, RS256 or HS256.
func (k *Key) Algorithm() string { return k.alg }

// CanSign reports whether the key holds private (or secret) material.
func (k *Key) CanSign() bool { return k.sign != nil }

// NewKey returns a Key for a private or public key: *ecdsa.PrivateKey or
// PublicKey on P-256 (ES256), ed25519.PrivateKey or PublicKey (EdDSA),
// *rsa.PrivateKey or PublicKey of at least 2048 bits (RS256), or a []byte
// HMAC secret of at least 32 bytes (HS256, which signs and verifies and is
// never published in the JWKS).
func NewKey(key any) (*Key, error) {
	k := &Key{}
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		if key == nil {
			return nil, errors.New("bridge: nil ECDSA private key")
		}
		if err := k.setEC(&key.PublicKey); err != nil {
			return nil, err
		}
		k.sign = key
	case *ecdsa.PublicKey:
		if err := k.setEC(key); err != nil {
			return nil, err
		}
	case ed25519.PrivateKey:
		if len(key) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("bridge: Ed25519 private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
		}
		k.alg, k.method = "EdDSA", jwt.SigningMethodEdDSA
		k.sign, k.verify = key, key.Public()
	case ed25519.PublicKey:
		if len(key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("bridge: Ed25519 public key has %d bytes, want %d", len(key), ed25519.PublicKeySize)
		}
		k.alg, k.method = "EdDSA", jwt.SigningMethodEdDSA
		k.verify = key
	case *rsa.PrivateKey:
		if key == nil {
			return nil, errors.New("bridge: nil RSA private key")
		}
		if err := k.setRSA(&key.PublicKey); err != nil {
			return nil, err
		}
		k.sign = key
	case *rsa.PublicKey:
		if err := k.setRSA(key); err != nil {
			return nil, err
		}
	case []byte:
		if len(key) < 32 {
			return nil, fmt.Errorf("bridge: HMAC secret has %d bytes, want at least 32", len(key))
		}
		secret := append([]byte(nil), key...)
		k.alg, k.method = "HS256", jwt.SigningMethodHS256
		k.sign, k.verify = secret, secret
		k.kid = thumbprint(map[string]string{"k": b64(secret), "kty": "oct"})
		return k, nil
	default:
		return nil, fmt.Errorf("bridge: unsupported key type %T", key)
	}
	j, err := jwkset.NewJWKFromKey(k.verify, jwkset.JWKOptions{})
	if err != nil {
		return nil, fmt.Errorf("bridge: %s key to JWK: %w", k.alg, err)
	}
	m := j.Marshal()
	k.kid = thumbprint(map[string]string{
		"crv": string(m.CRV), "e": m.E, "kty": string(m.KTY), "n": m.N, "x": m.X, "y": m.Y,
	})
	m.KID, m.ALG, m.USE = k.kid, jwkset.ALG(k.alg), jwkset.UseSig
	k.jwk = &m
	return k, nil
}

func (k *Key) setEC(pub *ecdsa.PublicKey) error {
	//lint:ignore SA1019 nil coordinates make every ecdsa method panic: they can only be checked here
	if pub == nil || pub.Curve == nil || pub.X == nil || pub.Y == nil {
		return errors.New("bridge: incomplete ECDSA key")
	}
	if pub.Curve != elliptic.P256() {
		return fmt.Errorf("bridge: ECDSA key on %s, want P-256 (ES256)", pub.Curve.Params().Name)
	}
	if _, err := pub.Bytes(); err != nil {
		return fmt.Errorf("bridge: invalid ES256 (P-256) key: %w", err)
	}
	k.alg, k.method, k.verify = "ES256", jwt.SigningMethodES256, pub
	return nil
}

func (k *Key) setRSA(pub *rsa.PublicKey) error {
	if pub == nil || pub.N == nil {
		return errors.New("bridge: incomplete RSA key")
	}
	if pub.N.BitLen() < 2048 {
		return fmt.Errorf("bridge: RSA key has %d bits, want at least 2048", pub.N.BitLen())
	}
	k.alg, k.method, k.verify = "RS256", jwt.SigningMethodRS256, pub
	return nil
}

// thumbprint computes the RFC 7638 thumbprint over the required members
// (the empty ones are left out; encoding/json sorts map keys as the RFC
// asks).
func thumbprint(members map[string]string) string {
	for name, v := range members {
		if v == "" {
			delete(members, name)
		}
	}
	b, _ := json.Marshal(members)
	sum := sha256.Sum256(b)
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// GenerateKey returns a new ES256 key, for tests and development: its
// tokens die with the process and other instances refuse them.
func GenerateKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bridge: generate key: %w", err)
	}
	return NewKey(priv)
}

// ParseKeyPEM parses a PEM private key (PKCS#8, SEC 1 "EC PRIVATE KEY" or
// PKCS#1 "RSA PRIVATE KEY") or public key ("PUBLIC KEY").
func ParseKeyPEM(data []byte) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("bridge: no PEM block found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("bridge: unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("bridge: parse %s: %w", block.Type, err)
	}
	return NewKey(key)
}

// LoadKeyFile reads a PEM key file with ParseKeyPEM.
func LoadKeyFile(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bridge: read key file: %w", err)
	}
	k, err := ParseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}

// MarshalKeyPEM encodes a signing key's private part as PKCS#8 PEM.
func MarshalKeyPEM(k *Key) ([]byte, error) {
	if _, ok := k.sign.([]byte); ok || k.sign == nil {
		return nil, errors.New("bridge: only asymmetric private keys can be written as PEM")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.sign)
	if err != nil {
		return nil, fmt.Errorf("bridge: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// jwksJSON renders the public members of the asymmetric keys as a JWK Set.
func jwksJSON(keys []*Key) ([]byte, error) {
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		if k.jwk != nil {
			set.Keys = append(set.Keys, *k.jwk)
		}
	}
	return json.Marshal(set)
}

// JWKSHandler serves the public keys (the signer's, previous ones still
// accepted) as a JWK Set, /.well-known/jwks.json; never an HMAC secret.
func (b *Bridge) JWKSHandler() http.Handler {
	body, err := jwksJSON(b.ownKeys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			http.Error(w, "jwks unavailable", http.StatusInternalServerError)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}
