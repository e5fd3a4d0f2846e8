package webtest

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// NewLogger returns a debug-level text logger writing into a new buffer.
func NewLogger() (*slog.Logger, *syncbuf.Buffer) {
	buf := new(syncbuf.Buffer)
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// CheckNoSecrets fails if logs contain any of secrets (tokens, cookie
// values, raw session IDs). Empty secrets are ignored.
func CheckNoSecrets(t testing.TB, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("logs contain a credential %.12q…:\n%s", s, logs)
		}
	}
}

// CookiesDesc describes cookies for test messages without their values
// (credentials stay out of test output too).
func CookiesDesc(cs ...*http.Cookie) string {
	var parts []string
	for _, c := range cs {
		if c == nil {
			parts = append(parts, "<nil>")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=<%d bytes>; Max-Age=%d", c.Name, len(c.Value), c.MaxAge))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
