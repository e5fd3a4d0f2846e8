package legacyapp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sessionbridge/sessionbridge/legacyapp"
)

func TestRequestLogs(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	c := newClient(t)
	e.mustLogin(t, c, "alice", "alice-password")
	cookie := e.sessionCookie(t, c).Value
	id := sessionID(t, cookie)
	e.get(t, c, "/api/orders/1001")
	e.login(t, newClient(t), "alice", "wrong-password-123")
	e.do(t, c, http.MethodPost, "/logout", nil, nil)

	logs := e.logs.String()
	for _, want := range []string{
		"method=POST route=/login status=303",
		"method=GET route=/api/orders/{id} status=200",
		"method=POST route=/login status=401",
		"method=POST route=/logout status=303",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("got logs without %q, want it:\n%s", want, logs)
		}
	}
	secrets := []struct{ name, value string }{
		{"cookie value", cookie},
		{"session ID", id},
		{"password", "alice-password"},
		{"failed password", "wrong-password-123"},
		{"raw path", "/api/orders/1001"},
	}
	for _, s := range secrets {
		if strings.Contains(logs, s.value) {
			t.Errorf("got logs containing the %s, want it never logged:\n%s", s.name, logs)
		}
	}
}
