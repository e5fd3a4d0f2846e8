package webtest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TokenPayload decodes a JWS token's payload into v (the token's claims)
// without verifying the token.
func TokenPayload(t testing.TB, tok string, v any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token payload: %v", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("token payload: %v", err)
	}
}
