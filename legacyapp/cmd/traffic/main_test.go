package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestRunRefusesRemote(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com"} {
		err := run(context.Background(), []string{"-url", u, "-duration", "1s"}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: got %v, want a loopback refusal", u, err)
		}
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"browser=6,api=2,anonymous=1,forged=1", true},
		{"browser=1", true},
		{"browser=0", false},
		{"robots=1", false},
		{"browser=x", false},
	}
	for _, tt := range tests {
		if _, err := parseMix(tt.in); (err == nil) != tt.ok {
			t.Errorf("parseMix(%q): got %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestRunShort(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-url", srv.URL, "-duration", "300ms", "-rate", "50", "-mix", "anonymous=1"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() == 0 || !strings.Contains(out.String(), "requests") {
		t.Errorf("got %d hits and %q, want traffic and a summary", hits.Load(), out.String())
	}
}
