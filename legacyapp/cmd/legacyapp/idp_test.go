package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// TestDemoIdPIdentities drives the demo with a trusted IdP, as the
// contract in design.md says: an IdP token is the local user whose email
// it carries verified, with the user's roles; otherwise it is its own
// identity (its sub as user_id, its issuer, no roles, no orders), whatever
// its sub or roles claim; a token without sub is refused.
func TestDemoIdPIdentities(t *testing.T) {
	const issuer, audience = "https://idp.test/", "legacyapp"
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(priv.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "idp-1", ALG: jwkset.AlgES256}})
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	defer idp.Close()

	base := startDemo(t, map[string]string{
		"BRIDGE_TRUSTED_ISSUER": issuer, "BRIDGE_TRUSTED_JWKS_URL": idp.URL, "BRIDGE_TRUSTED_AUDIENCE": audience,
	})

	sign := func(claims jwt.MapClaims) string {
		now := time.Now()
		c := jwt.MapClaims{"iss": issuer, "aud": audience, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
		for k, v := range claims {
			c[k] = v
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		tok.Header["kid"] = "idp-1"
		s, err := tok.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	get := func(path, tok string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	// The IdP's keys load in the background: wait for a token to pass.
	mallory := sign(jwt.MapClaims{"sub": "2", "roles": []string{"admin"}, "name": "mallory"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := get("/api/me", mallory); code == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// sub "2" (bob's ID) and roles [admin]: not bob, not an admin.
	code, me := get("/api/me", mallory)
	if code != http.StatusOK || me["user_id"] != "2" || me["issuer"] != issuer || len(me["roles"].([]any)) != 0 || me["auth_source"] != "jwt_bearer" {
		t.Errorf("/api/me, IdP token with sub 2 and roles [admin]: %d %v, want its own identity (issuer set, no roles)", code, me)
	}
	if code, body := get("/api/orders", mallory); code != http.StatusOK || len(body["orders"].([]any)) != 0 {
		t.Errorf("/api/orders, IdP token with bob's ID as sub: %d %v, want no orders", code, body)
	}
	if code, _ := get("/admin/users", mallory); code != http.StatusForbidden {
		t.Errorf("/admin/users, IdP token claiming admin: %d, want 403", code)
	}

	// A verified email links to the local user, with the local roles.
	bob := sign(jwt.MapClaims{"sub": "idp|bob", "email": "bob@example.com", "email_verified": true})
	code, me = get("/api/me", bob)
	roles, _ := me["roles"].([]any)
	if code != http.StatusOK || me["user_id"] != "2" || me["username"] != "bob" || me["issuer"] != nil ||
		!slices.Equal(roles, []any{"user", "admin"}) {
		t.Errorf("/api/me, IdP token with bob's verified email: %d %v, want local user 2 with roles user, admin", code, me)
	}
	if code, body := get("/api/orders", bob); code != http.StatusOK || len(body["orders"].([]any)) == 0 {
		t.Errorf("/api/orders as linked bob: %d %v, want bob's orders", code, body)
	}
	if code, _ := get("/admin/users", bob); code != http.StatusOK {
		t.Errorf("/admin/users as linked bob: %d, want 200", code)
	}

	// Unverified: not linked.
	unverified := sign(jwt.MapClaims{"sub": "idp|eve", "email": "bob@example.com", "email_verified": false})
	if code, me := get("/api/me", unverified); code != http.StatusOK || me["user_id"] != "idp|eve" || me["issuer"] != issuer {
		t.Errorf("/api/me, unverified email: %d %v, want the IdP's own identity", code, me)
	}

	// No sub: refused.
	if code, body := get("/api/me", sign(jwt.MapClaims{"email": "bob@example.com", "email_verified": true})); code != http.StatusUnauthorized {
		t.Errorf("/api/me, IdP token without sub: %d %v, want 401", code, body)
	}
}
