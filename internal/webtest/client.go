package webtest

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"testing"
	"time"
)

// NewJarClient returns a client of ts with its own cookie jar that does
// not follow redirects.
func NewJarClient(t testing.TB, ts *httptest.Server) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookiejar.New: %v", err)
	}
	c := &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if tr, ok := ts.Client().Transport.(*http.Transport); ok {
		c.Transport = tr
	} else {
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	return c
}

// Response is a response with its body read.
type Response struct {
	*http.Response
	Body string
}

// Cookie returns the Set-Cookie of name in the response, or nil.
func (r *Response) Cookie(name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Reason decodes a WriteError body's reason ("" if it is not one).
func (r *Response) Reason() string {
	var b struct{ Reason string }
	_ = json.Unmarshal([]byte(r.Body), &b)
	return b.Reason
}

// JSON decodes the body into v, failing the test if it is not JSON of
// v's type.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Body), v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, r.Body, err)
	}
}

// Do sends a request with the headers hdr (and cookies, if any) and reads
// the whole response.
func Do(t testing.TB, c *http.Client, method, url string, hdr http.Header, cookies ...*http.Cookie) *Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return &Response{Response: resp, Body: string(body)}
}

// Bearer returns a header with Authorization: Bearer tok.
func Bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
