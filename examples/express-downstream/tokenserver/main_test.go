package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRun checks the contract the Node test relies on: one JSON line with
// a reachable JWKS whose key signs the valid token, and the other tokens
// differing as their names say.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, pw); pw.Close() }()

	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var in info
	if err := json.Unmarshal(line, &in); err != nil {
		t.Fatalf("output %q: %v", line, err)
	}

	resp, err := http.Get(in.JWKSURL)
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct {
			KID string `json:"kid"`
			ALG string `json:"alg"`
		} `json:"keys"`
	}
	err = json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if err != nil || len(jwks.Keys) != 1 || jwks.Keys[0].ALG != "ES256" {
		t.Fatalf("jwks: got %+v (%v), want one ES256 key", jwks, err)
	}
	kid := jwks.Keys[0].KID

	now := time.Now().Unix()
	tests := []struct {
		name, token, kid, aud string
		expired               bool
	}{
		{"token", in.Token, kid, audience, false},
		{"token_other_audience", in.TokenOtherAudience, kid, otherAudience, false},
		{"token_expired", in.TokenExpired, kid, audience, true},
	}
	for _, tt := range tests {
		h, c := decode(t, tt.token)
		if h.KID != tt.kid || h.ALG != "ES256" || c.Sub != subject || c.Iss != in.Issuer ||
			len(c.Aud) != 1 || c.Aud[0] != tt.aud || (c.Exp < now) != tt.expired {
			t.Errorf("%s: got header %+v claims %+v, want kid %s, aud %s, expired %v", tt.name, h, c, tt.kid, tt.aud, tt.expired)
		}
	}
	if h, _ := decode(t, in.TokenOtherKey); h.KID == kid || h.KID == "" {
		t.Errorf("token_other_key: kid %q, want another key's", h.KID)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

type header struct {
	KID string `json:"kid"`
	ALG string `json:"alg"`
}

type claims struct {
	Sub string   `json:"sub"`
	Iss string   `json:"iss"`
	Aud []string `json:"aud"`
	Exp int64    `json:"exp"`
}

// decode reads a token's header and claims without verifying it.
func decode(t *testing.T, tok string) (header, claims) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	var h header
	var c claims
	for i, v := range []any{&h, &c} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	return h, c
}
