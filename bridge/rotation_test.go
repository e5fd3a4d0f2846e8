// Tests of signing-key rotation: Config.SigningKey + VerificationKeys, and
// the JWKS that publishes them.
package bridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// rotJWKS fetches a JWKS from h and returns its keys by kid, parsed by
// jwkset (public members only: a private member fails the test).
func rotJWKS(t testing.TB, h http.Handler) map[string]jwkset.JWK {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("JWKS: %d", rec.Code)
	}
	body, _ := io.ReadAll(rec.Body)
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	for _, k := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Fatalf("JWKS publishes the private member %q: %s", private, body)
			}
		}
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	out := map[string]jwkset.JWK{}
	for _, m := range set.Keys {
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			t.Fatalf("JWK %s: %v", m.KID, err)
		}
		out[m.KID] = j
	}
	return out
}

// rotVerifyJWKS verifies tok independently of the bridge: golang-jwt with
// the key the JWKS publishes under the token's kid, pinned to the JWK's
// alg, with the bridge's issuer and audience.
func rotVerifyJWKS(keys map[string]jwkset.JWK, tok string) (*Claims, error) {
	c := new(Claims)
	_, err := jwt.ParseWithClaims(tok, c, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		j, ok := keys[kid]
		if !ok {
			return nil, errors.New("kid not in the JWKS")
		}
		if alg := j.Marshal().ALG.String(); alg != tk.Method.Alg() {
			return nil, errors.New("alg " + tk.Method.Alg() + " but the JWK says " + alg)
		}
		return j.Key(), nil
	}, jwt.WithIssuer(testIssuer), jwt.WithAudience(testAudience), jwt.WithExpirationRequired(), jwt.WithStrictDecoding())
	return c, err
}

// rotHeader decodes a token's header.
func rotHeader(t testing.TB, tok string) map[string]any {
	t.Helper()
	seg, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]any{}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func rotKey(t testing.TB, kind string) *Key {
	t.Helper()
	var (
		k   *Key
		err error
	)
	switch kind {
	case "ES256":
		k, err = GenerateKey()
	case "RS256":
		idpPool(t)
		k, err = NewKey(idpKeyPool.rsa[0])
	case "EdDSA":
		var priv ed25519.PrivateKey
		_, priv, err = ed25519.GenerateKey(rand.Reader)
		if err == nil {
			k, err = NewKey(priv)
		}
	case "HS256":
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		k, err = NewKey(secret)
	}
	if err != nil || k == nil {
		t.Fatalf("key %s: %v", kind, err)
	}
	return k
}

// TestRotation: an instance with key1 mints; the next configuration signs
// with key2 and still verifies key1; the one after drops key1.
func TestRotation(t *testing.T) {
	for _, tc := range []struct{ from, to string }{
		{"ES256", "ES256"},
		{"ES256", "RS256"},
		{"RS256", "EdDSA"},
		{"EdDSA", "ES256"},
		{"HS256", "ES256"},
		{"ES256", "HS256"},
	} {
		t.Run(tc.from+" to "+tc.to, func(t *testing.T) {
			key1, key2 := rotKey(t, tc.from), rotKey(t, tc.to)
			if key1.KID() == key2.KID() {
				t.Fatal("two keys, one kid")
			}
			withKeys := func(sign *Key, verify ...*Key) *Bridge {
				return newTestBridge(t, func(c *Config) { c.SigningKey, c.VerificationKeys = sign, verify })
			}
			// Tokens as the bridge mints them (from a session) and as a
			// test mints them.
			mintBy := func(b *Bridge) []string {
				tok, _, err := b.mintFor(context.Background(), testUser("7"), 0, "sid-7", "", b.cfg.Now())
				if err != nil {
					t.Fatal(err)
				}
				return []string{tok, mintTestToken(t, b, "7", nil)}
			}

			b1 := withKeys(key1)
			old := mintBy(b1)
			for _, tok := range old {
				if kid := rotHeader(t, tok)["kid"]; kid != key1.KID() {
					t.Fatalf("key1's token has kid %v", kid)
				}
			}

			// Rotation: sign with key2, still accept key1.
			b2 := withKeys(key2, key1)
			for _, tok := range old {
				if err := verifyErr(b2, tok); err != nil {
					t.Errorf("key1's token refused after the rotation: %v", err)
				}
			}
			fresh := mintBy(b2)
			for _, tok := range fresh {
				h := rotHeader(t, tok)
				if h["kid"] != key2.KID() || h["alg"] != key2.Algorithm() {
					t.Errorf("new token header %v, want kid %s alg %s", h, key2.KID(), key2.Algorithm())
				}
				if err := verifyErr(b2, tok); err != nil {
					t.Errorf("new token refused: %v", err)
				}
				// An instance not yet rotated does not know key2.
				if err := verifyErr(b1, tok); err == nil {
					t.Error("key2's token accepted by an instance that only knows key1")
				}
			}
			// The JWKS shows both asymmetric keys, each pinned to its
			// algorithm; a secret is never published.
			keys := rotJWKS(t, b2.JWKSHandler())
			var wantKIDs []string
			for _, k := range []*Key{key1, key2} {
				if k.Algorithm() != "HS256" {
					wantKIDs = append(wantKIDs, k.KID())
				}
			}
			var gotKIDs []string
			for kid, j := range keys {
				gotKIDs = append(gotKIDs, kid)
				m := j.Marshal()
				if m.USE != jwkset.UseSig {
					t.Errorf("JWK %s use %q", kid, m.USE)
				}
				for _, k := range []*Key{key1, key2} {
					if k.KID() == kid && m.ALG.String() != k.Algorithm() {
						t.Errorf("JWK %s alg %q, want %s", kid, m.ALG, k.Algorithm())
					}
				}
			}
			slices.Sort(gotKIDs)
			slices.Sort(wantKIDs)
			if !slices.Equal(gotKIDs, wantKIDs) {
				t.Errorf("JWKS kids %q, want %q", gotKIDs, wantKIDs)
			}
			// Downstream services verifying through the JWKS accept
			// both generations (asymmetric keys only).
			for _, tok := range append(slices.Clone(old), fresh...) {
				alg, _ := rotHeader(t, tok)["alg"].(string)
				if alg == "HS256" {
					continue
				}
				if _, err := rotVerifyJWKS(keys, tok); err != nil {
					t.Errorf("%s token fails JWKS verification: %v", alg, err)
				}
			}

			// Several keys: kid is required, and a kid is bound to its
			// key's algorithm.
			noKid := jwt.NewWithClaims(key1.method, testClaims(b2, "7"))
			s, err := noKid.SignedString(key1.sign)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyErr(b2, s); err == nil {
				t.Error("token without kid accepted while two keys verify")
			}

			// key1 dropped: its tokens are refused (fresh verifier, and
			// the same token on a bridge that had cached it is not a
			// concern: caches are per instance and end with it).
			b3 := withKeys(key2)
			for _, tok := range old {
				if err := verifyErr(b3, tok); err == nil {
					t.Error("key1's token accepted after key1 was dropped")
				}
			}
			for _, tok := range fresh {
				if err := verifyErr(b3, tok); err != nil {
					t.Errorf("key2's token refused: %v", err)
				}
			}
			keys = rotJWKS(t, b3.JWKSHandler())
			if _, ok := keys[key1.KID()]; ok {
				t.Error("dropped key1 still in the JWKS")
			}
		})
	}
}

// TestRotationKidConfusion: while two keys verify, a token signed by one
// key under the other's kid, or with the other's algorithm, is refused.
func TestRotationKidConfusion(t *testing.T) {
	ec := rotKey(t, "ES256")
	rs := rotKey(t, "RS256")
	hs := rotKey(t, "HS256")
	b := newTestBridge(t, func(c *Config) { c.SigningKey, c.VerificationKeys = ec, []*Key{rs, hs} })
	ecPriv := ec.sign.(*ecdsa.PrivateKey)
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{"EC key under the RSA kid", jwt.SigningMethodES256, ecPriv, rs.KID()},
		{"RSA key under the EC kid", jwt.SigningMethodRS256, rs.sign, ec.KID()},
		{"HS256 under the RSA kid, keyed with the HMAC secret", jwt.SigningMethodHS256, hs.sign, rs.KID()},
		{"HS256 under the EC kid, keyed with the HMAC secret", jwt.SigningMethodHS256, hs.sign, ec.KID()},
		{"PS256 under the RSA kid", jwt.SigningMethodPS256, rs.sign, rs.KID()},
		{"unknown kid", jwt.SigningMethodES256, ecPriv, "not-a-kid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := jwt.NewWithClaims(tc.method, testClaims(b, "7"))
			tk.Header["kid"] = tc.kid
			s, err := tk.SignedString(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyErr(b, s); err == nil {
				t.Error("accepted")
			}
		})
	}
	// Each key verifies its own tokens.
	for _, k := range []*Key{ec, rs, hs} {
		tok := mintTestTokenWith(t, k, b, "7", nil)
		if err := verifyErr(b, tok); err != nil {
			t.Errorf("%s token refused: %v", k.Algorithm(), err)
		}
	}
}
