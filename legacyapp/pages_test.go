package legacyapp_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sessionbridge/sessionbridge/legacyapp"
)

func TestPagesRequireLogin(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		name, method, path, cookie string
	}{
		{"profile", http.MethodGet, "/profile", ""},
		{"cart", http.MethodGet, "/cart", ""},
		{"add to cart", http.MethodPost, "/cart/items", ""},
		{"profile, invalid cookie", http.MethodGet, "/profile", "garbage"},
		{"cart, invalid cookie", http.MethodGet, "/cart", "garbage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t)
			if tt.cookie != "" {
				e.setCookie(t, c, tt.cookie)
			}
			var form url.Values
			if tt.method == http.MethodPost {
				form = url.Values{"item": {"tea"}}
			}
			resp, _ := e.do(t, c, tt.method, tt.path, form, nil)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusSeeOther)
			}
			if got, want := resp.Header.Get("Location"), "/login"; got != want {
				t.Errorf("got Location %q, want %q", got, want)
			}
		})
	}
}

func TestProfile(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	tests := []struct {
		username, password string
		want               []string
	}{
		{"alice", "alice-password", []string{`<dd id="username">alice</dd>`, `<dd id="user-id">1</dd>`, `<dd id="roles">user</dd>`}},
		{"bob", "bob-password", []string{`<dd id="username">bob</dd>`, `<dd id="user-id">2</dd>`, `<dd id="roles">user, admin</dd>`}},
	}
	for _, tt := range tests {
		t.Run(tt.username, func(t *testing.T) {
			c := newClient(t)
			e.mustLogin(t, c, tt.username, tt.password)
			resp, body := e.get(t, c, "/profile")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d, want %d", resp.StatusCode, http.StatusOK)
			}
			for _, want := range tt.want {
				if !strings.Contains(body, want) {
					t.Errorf("got body without %q, want it:\n%s", want, body)
				}
			}
		})
	}
}

func TestCart(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	alice := newClient(t)
	e.mustLogin(t, alice, "alice", "alice-password")
	bob := newClient(t)
	e.mustLogin(t, bob, "bob", "bob-password")

	if _, body := e.get(t, alice, "/cart"); !strings.Contains(body, `id="cart-empty"`) {
		t.Fatalf("got a non-empty cart before adding, want empty:\n%s", body)
	}
	adds := []struct {
		name, item string
		wantStatus int
		wantBody   string // substring of the error page
	}{
		{"first", "espresso beans", http.StatusSeeOther, ""},
		{"second, escaped", "<tea & biscuits>", http.StatusSeeOther, ""},
		{"empty", "  ", http.StatusBadRequest, "Enter an item name."},
		{"too long", strings.Repeat("x", 65), http.StatusBadRequest, "at most 64 characters"},
	}
	for _, tt := range adds {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(t, alice, http.MethodPost, "/cart/items", url.Values{"item": {tt.item}}, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusSeeOther {
				if got, want := resp.Header.Get("Location"), "/cart"; got != want {
					t.Errorf("got Location %q, want %q", got, want)
				}
			} else if !strings.Contains(body, tt.wantBody) {
				t.Errorf("got body without %q, want it:\n%s", tt.wantBody, body)
			}
		})
	}

	_, body := e.get(t, alice, "/cart")
	want := "<li>espresso beans</li>\n  <li>&lt;tea &amp; biscuits&gt;</li>"
	if !strings.Contains(body, want) {
		t.Errorf("got cart page without %q, want it:\n%s", want, body)
	}
	if _, body := e.get(t, bob, "/cart"); !strings.Contains(body, `id="cart-empty"`) {
		t.Errorf("got bob's cart non-empty, want empty (carts are per session):\n%s", body)
	}
}

func TestCartIsCapped(t *testing.T) {
	e := newTestEnv(t, legacyapp.Config{})
	c := newClient(t)
	e.mustLogin(t, c, "alice", "alice-password")
	for i := range 20 {
		resp, _ := e.do(t, c, http.MethodPost, "/cart/items", url.Values{"item": {strings.Repeat("x", 64)}}, nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("item %d: got status %d, want %d", i, resp.StatusCode, http.StatusSeeOther)
		}
	}
	resp, body := e.do(t, c, http.MethodPost, "/cart/items", url.Values{"item": {"one more"}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Your cart is full.") {
		t.Fatalf("got %d, want %d with \"Your cart is full.\"", resp.StatusCode, http.StatusBadRequest)
	}
}
