package webtest

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, _ := r.Cookie("in")
		if ck == nil || ck.Value != "v" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "missing credentials", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "out", Value: "secret", MaxAge: 60})
		http.Redirect(w, r, "/elsewhere", http.StatusFound) // not followed
	}))
	defer ts.Close()
	r := Do(t, NewJarClient(t, ts), http.MethodGet, ts.URL, Bearer("tok"), &http.Cookie{Name: "in", Value: "v"})
	if r.StatusCode != http.StatusFound {
		t.Fatalf("status: got %d, want %d (body %q)", r.StatusCode, http.StatusFound, r.Body)
	}
	if got := CookiesDesc(r.Cookie("out"), r.Cookie("absent")); got != "[out=<6 bytes>; Max-Age=60, <nil>]" {
		t.Errorf("cookies: got %s, want [out=<6 bytes>; Max-Age=60, <nil>]", got)
	}
}

func TestResponseBody(t *testing.T) {
	r := &Response{Body: `{"reason":"no_credentials","n":3}`}
	if got := r.Reason(); got != "no_credentials" {
		t.Errorf("Reason: got %q, want no_credentials", got)
	}
	var v struct{ N int }
	r.JSON(t, &v)
	if v.N != 3 {
		t.Errorf("JSON: got %d, want 3", v.N)
	}
	if got := (&Response{Body: "not json"}).Reason(); got != "" {
		t.Errorf("Reason of a non-JSON body: got %q, want empty", got)
	}
}

func TestTokenPayload(t *testing.T) {
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	var c struct{ Sub string }
	TokenPayload(t, seg(`{"alg":"none"}`)+"."+seg(`{"sub":"alice"}`)+".sig", &c)
	if c.Sub != "alice" {
		t.Errorf("sub: got %q, want alice", c.Sub)
	}
}

func TestClock(t *testing.T) {
	c := NewClock()
	start := c.Now()
	if !start.Equal(start.Truncate(time.Second)) {
		t.Errorf("start: got %v, want a whole second", start)
	}
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Errorf("after Advance: got %v, want 1m30s", got)
	}
}

func TestLogger(t *testing.T) {
	logger, buf := NewLogger()
	logger.Debug("hello", "k", "v")
	if got := buf.String(); !strings.Contains(got, "msg=hello k=v") {
		t.Errorf("debug log: got %q, want msg=hello k=v", got)
	}
	CheckNoSecrets(t, buf.String(), "", "not-logged")
}
