package bridge

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fuzzNow is the fixed clock of the fuzz verifier: the tokens of the
// committed corpus (testdata/fuzz) stay valid.
var fuzzNow = time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z

// fuzzKeys are deterministic keys, so that the corpus tokens they signed
// verify in every run: ES256 (signer), EdDSA and HS256 (previous keys).
func fuzzKeys(t testing.TB) []*Key {
	t.Helper()
	seed := func(s string) []byte { h := sha256.Sum256([]byte("sessionbridge fuzz " + s)); return h[:] }
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed("es256"))
	if err != nil {
		t.Fatalf("ParseRawPrivateKey: %v", err)
	}
	return []*Key{
		mustKey(t, ec),
		mustKey(t, ed25519.NewKeyFromSeed(seed("ed25519"))),
		mustKey(t, seed("hs256")),
	}
}

// newFuzzBridge returns a Bridge with the fuzz keys (several: kid
// required), plus RS256 when withRSA, and the fixed clock.
func newFuzzBridge(t testing.TB, withRSA bool) *Bridge {
	t.Helper()
	keys := fuzzKeys(t)
	if withRSA {
		keys = append(keys, mustKey(t, testRSAKey(t)))
	}
	return newTestBridge(t, func(c *Config) {
		c.SigningKey = keys[0]
		c.VerificationKeys = keys[1:]
		c.Now = func() time.Time { return fuzzNow }
		c.Routes = Routes{"/dual": Dual}
	})
}

// fuzzClaims are valid claims at fuzzNow.
func fuzzClaims(mods ...func(map[string]any)) map[string]any {
	now := fuzzNow.Unix()
	c := map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": testAudience,
		"iat": now, "nbf": now, "exp": now + 3600, "jti": "fuzz-jti",
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

// fuzzTokenSeeds are good tokens for each key of b and the attack forms.
func fuzzTokenSeeds(t testing.TB, b *Bridge) []string {
	t.Helper()
	var seeds []string
	for _, k := range b.ownKeys {
		h := map[string]any{"alg": k.alg, "typ": "JWT", "kid": k.kid}
		seeds = append(seeds, signJWS(t, k, h, fuzzClaims()))
	}
	es := b.ownKeys[0]
	good := seeds[0]
	h, p, s := splitJWS(t, good)
	hdr := func(mods ...func(map[string]any)) map[string]any {
		m := map[string]any{"alg": "ES256", "typ": "JWT", "kid": es.kid}
		for _, f := range mods {
			f(m)
		}
		return m
	}
	seeds = append(seeds,
		"", ".", "..", "a.b.c", h+"."+p, h+"."+p+".", good+".x",
		jwsSeg(hdr(member("alg", "none")))+"."+p+".",
		jwsSeg(hdr(member("alg", "NONE")))+"."+p+"."+s,
		h+"."+p+"."+setTrailingBits(t, s),
		h+"."+p+"."+b64(make([]byte, 64)),
		hs256(t, hdr(member("alg", "HS256")), fuzzClaims(), publicKeyForms(t, es)["PEM"]),
		signJWS(t, es, hdr(member("jku", "http://127.0.0.1:1/jwks.json")), fuzzClaims()),
		signJWS(t, es, hdr(member("crit", []string{"exp"})), fuzzClaims()),
		signJWS(t, es, hdr(noMember("kid")), fuzzClaims()),
		signJWS(t, es, hdr(member("kid", "../../etc/passwd")), fuzzClaims()),
		signJWS(t, es, hdr(), fuzzClaims(member("iss", "https://evil.test"))),
		signJWS(t, es, hdr(), fuzzClaims(noMember("exp"))),
		signJWS(t, es, hdr(), fuzzClaims(member("exp", fuzzNow.Unix()-3600))),
		signJWS(t, es, hdr(), fuzzClaims(member("nbf", fuzzNow.Unix()+3600))),
		signInput(t, es, h+"."+b64([]byte(`[1]`))),
		signInput(t, es, h+"."+b64([]byte(strings.Repeat("[", 500)+strings.Repeat("]", 500)))),
		good[:len(good)-2]+"+/",
		base64.URLEncoding.EncodeToString([]byte(`{"alg":"ES256"}`))+"."+p+"."+s,
		`{"payload":"`+p+`","protected":"`+h+`","signature":"`+s+`"}`,
	)
	return seeds
}

// checkAcceptedByVerifier checks what an accepted token must satisfy: its
// shape, no forbidden header, a kid naming a configured key of its
// issuer pinned to its alg, valid claims, and a signature golang-jwt
// verifies with that key directly.
func checkAcceptedByVerifier(t *testing.T, b *Bridge, tok string, e *cacheEntry) {
	t.Helper()
	if err := checkShape(tok, b.cfg.MaxTokenSize); err != nil {
		t.Fatalf("accepted token fails checkShape: %v", err)
	}
	h, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		t.Fatalf("accepted token's header is not strict base64url: %v", err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatalf("accepted token's header: %v", err)
	}
	for _, name := range forbiddenHeaders {
		if _, ok := hdr[name]; ok {
			t.Fatalf("accepted token carries header %q", name)
		}
	}
	alg, _ := hdr["alg"].(string)
	kid, _ := hdr["kid"].(string)
	var key *Key
	for _, k := range b.ownKeys {
		if k.kid == kid {
			key = k
		}
	}
	if key == nil {
		t.Fatalf("accepted token's kid %q names no configured key (several keys: kid required)", kid)
	}
	if key.alg != alg {
		t.Fatalf("accepted token's alg %q, key %s pinned to %s", alg, kid, key.alg)
	}
	c := e.claims
	if c.Issuer != b.cfg.Issuer {
		t.Fatalf("accepted token's iss %q, want %q", c.Issuer, b.cfg.Issuer)
	}
	if !slices.Contains(c.Audience, b.cfg.Audience) {
		t.Fatalf("accepted token's aud %q lacks %q", c.Audience, b.cfg.Audience)
	}
	now := b.cfg.Now()
	if c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Add(b.cfg.Leeway)) {
		t.Fatalf("accepted token's exp %v is missing or past at %v", c.ExpiresAt, now)
	}
	if c.NotBefore != nil && now.Before(c.NotBefore.Add(-b.cfg.Leeway)) {
		t.Fatalf("accepted token's nbf %v is ahead of %v", c.NotBefore, now)
	}
	if c.IssuedAt != nil && now.Before(c.IssuedAt.Add(-b.cfg.Leeway)) {
		t.Fatalf("accepted token's iat %v is ahead of %v", c.IssuedAt, now)
	}
	if b.revoked.has(c.ID, c.SID, subject{c.Issuer, c.Subject}, c.ExpiresAt.Time, now) {
		t.Fatalf("accepted token is revoked")
	}
	direct := new(Claims)
	_, err = jwt.NewParser(jwt.WithValidMethods([]string{key.alg}), jwt.WithStrictDecoding(), jwt.WithoutClaimsValidation()).
		ParseWithClaims(tok, direct, func(*jwt.Token) (any, error) { return key.verify, nil })
	if err != nil {
		t.Fatalf("accepted token fails golang-jwt's own check with key %s: %v", kid, err)
	}
	if direct.Subject != c.Subject || direct.ID != c.ID {
		t.Fatalf("claims differ: verifier %+v, golang-jwt %+v", c, direct)
	}
}

// FuzzVerifyToken sends arbitrary strings to the verifier: it never
// panics, refuses with one of the token sentinels, and whatever it accepts
// satisfies checkAcceptedByVerifier.
func FuzzVerifyToken(f *testing.F) {
	b := newFuzzBridge(f, true)
	for _, s := range fuzzTokenSeeds(f, b) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		e, err := b.verifier.verify(tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrTokenExpired) && !errors.Is(err, ErrTokenRevoked) {
				t.Fatalf("verify: %v wraps no token sentinel", err)
			}
			if e != nil {
				t.Fatalf("verify: entry returned with error %v", err)
			}
			return
		}
		checkAcceptedByVerifier(t, b, tok, e)
	})
}

func TestFuzzTokenSeeds(t *testing.T) {
	// The seeds that must verify do (and the fuzz property holds on all).
	b := newFuzzBridge(t, true)
	seeds := fuzzTokenSeeds(t, b)
	for i, s := range seeds {
		e, err := b.verifier.verify(s)
		if i < len(b.ownKeys) {
			if err != nil {
				t.Errorf("seed %d (%s): %v", i, b.ownKeys[i].alg, err)
				continue
			}
			checkAcceptedByVerifier(t, b, s, e)
		} else if err == nil {
			t.Errorf("attack seed %d accepted: %.60q", i, s)
		}
	}
}

// FuzzBearerHeader checks bearerToken and authorization against a
// reference: the scheme "Bearer" (any case), one space, the token trimmed;
// an empty token is no credential; a token that is not JWT-shaped, and any
// other scheme, is the app's.
func FuzzBearerHeader(f *testing.F) {
	for _, s := range []string{
		"Bearer abc.def.ghi", "bearer abc", "BEARER  abc ", "Bearer", "Bearer ", "Bearer  \t ",
		"Basic dXNlcjpwYXNz", "Bearerabc", "Bearer a b", "", " Bearer abc", "Bearer\tabc",
		"Bearer abc\r\n", "bEaReR x", "Bearer \u00a0x\u00a0", "Token abc", "Bearer=abc",
		"Bearer ak_alice_0f1e2d3c", "Bearer eyJhbGciOiJIUzI1NiJ9", "bearer a.b", " Bearer ", "BEARER",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := &http.Request{Header: http.Header{"Authorization": {h}}}
		tok, ok := bearerToken(r)
		_, app := authorization(r)
		wantTok, wantOK, wantApp := "", false, strings.TrimSpace(h) != "" && !strings.EqualFold(strings.TrimSpace(h), "Bearer")
		if scheme, rest, found := strings.Cut(h, " "); found && strings.EqualFold(scheme, "Bearer") {
			wantTok = strings.TrimSpace(rest)
			wantOK = wantTok != ""
			wantApp = wantOK && !strings.HasPrefix(wantTok, "eyJ") && !strings.HasPrefix(wantTok, "{") && !strings.Contains(wantTok, ".")
			if wantApp {
				wantTok, wantOK = "", false
			}
		}
		if ok != wantOK || tok != wantTok || app != wantApp {
			t.Fatalf("bearerToken(%q): got %q, %v, app %v, want %q, %v, app %v", h, tok, ok, app, wantTok, wantOK, wantApp)
		}
		if ok && (tok != strings.TrimSpace(tok) || !strings.Contains(h, tok)) {
			t.Fatalf("bearerToken(%q): token %q not a trimmed part of the header", h, tok)
		}
		if ok {
			_ = checkShape(tok, DefaultMaxTokenSize) // never panics
		}
	})
}

// wellFormedCookies reports whether every non-empty line is a valid Cookie
// header for net/http (http.ParseCookie) and the count is within its
// limit.
func wellFormedCookies(lines []string) bool {
	n := 0
	for _, l := range lines {
		if l == "" {
			continue
		}
		cs, err := http.ParseCookie(l)
		if err != nil {
			return false
		}
		n += len(cs)
	}
	return n <= 3000
}

// FuzzCookieValue compares cookieValue with net/http's r.Cookie on
// well-formed Cookie headers (one or two lines); on any input it never
// panics and returns a value found in the headers.
func FuzzCookieValue(f *testing.F) {
	for _, s := range [][3]string{
		{"id_token=abc.def.ghi", "", "id_token"},
		{"a=1; id_token=x; b=2", "", "id_token"},
		{`id_token="quoted"`, "", "id_token"},
		{`id_token=""`, "", "id_token"},
		{"id_token=", "id_token=second", "id_token"},
		{"id_token=first", "id_token=second", "id_token"},
		{"session=s", "id_token=x", "id_token"},
		{"ID_TOKEN=x; id_token=y", "", "id_token"},
		{"id_token =x", "", "id_token"},
		{" id_token=x ;", "", "id_token"},
		{"id_token=a=b", "", "id_token"},
		{"id_token=x;;id_token=y", "", "id_token"},
		{"id_token=\"x", "", "id_token"},
		{"__Host-id_token=abc", "", "__Host-id_token"},
		{"x=\x7f; id_token=ok", "", "id_token"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, line1, line2, name string) {
		if name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r)
		}) {
			return // not a cookie name
		}
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		r := &http.Request{Header: http.Header{"Cookie": lines}}
		got := cookieValue(r, name)
		if got != "" && !strings.Contains(line1, got) && !strings.Contains(line2, got) {
			t.Fatalf("cookieValue: %q is in no header line", got)
		}
		if !wellFormedCookies(lines) {
			return
		}
		want := ""
		if c, err := r.Cookie(name); err == nil {
			want = c.Value
		}
		if got != want {
			t.Fatalf("cookieValue(%q, %q): got %q, r.Cookie %q", lines, name, got, want)
		}
	})
}

// FuzzParseRoutes: ParseRoutes never panics; what it accepts is
// well-formed and round-trips through "template=mode,...".
func FuzzParseRoutes(f *testing.F) {
	for _, s := range []string{
		"", "/a=dual", "/a=dual,/b=jwt, /c = legacy ", "/api/orders/{id}=JWT", ",,,", "/a=dual,/a=jwt",
		"a=dual", "/a", "/a=", "/a=unknown", "/a=dual=jwt", "=dual", "/a b=dual", " /x\t=\tlegacy\n",
		"/{id:[0-9]+}=dual", "/é=dual", "/a/{id:[0-9]{1,3}}=jwt,/b/{x:(?:k=v)}=dual", "/}{=dual", "/a{=b}=dual",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		routes, err := ParseRoutes(s)
		if err != nil {
			if routes != nil {
				t.Fatalf("ParseRoutes(%q): routes %v with error %v", s, routes, err)
			}
			return
		}
		var items []string
		for _, tmpl := range slices.Sorted(maps.Keys(routes)) {
			m := routes[tmpl]
			if !strings.HasPrefix(tmpl, "/") || tmpl != strings.TrimSpace(tmpl) ||
				indexOutsideBraces(tmpl, ',') >= 0 || indexOutsideBraces(tmpl, '=') >= 0 {
				t.Fatalf("ParseRoutes(%q): template %q", s, tmpl)
			}
			if m >= numModes {
				t.Fatalf("ParseRoutes(%q): mode %v", s, m)
			}
			items = append(items, tmpl+"="+m.String())
		}
		again, err := ParseRoutes(strings.Join(items, ","))
		if err != nil || !maps.Equal(routes, again) {
			t.Fatalf("round trip of %q: got %v, %v, want %v", s, again, err, routes)
		}
	})
}

// TestFuzzCorpus: the committed corpus exists for every target (go test
// runs it as seeds), and its *_valid tokens still verify with the fuzz
// keys at fuzzNow.
func TestFuzzCorpus(t *testing.T) {
	for _, name := range []string{"FuzzVerifyToken", "FuzzBearerHeader", "FuzzCookieValue", "FuzzParseRoutes"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil || len(entries) == 0 {
			t.Errorf("testdata/fuzz/%s: %d files, %v", name, len(entries), err)
		}
	}
	b := newFuzzBridge(t, false)
	valid, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzVerifyToken", "*_valid"))
	if len(valid) < 3 {
		t.Errorf("valid token corpus files: got %d, want 3", len(valid))
	}
	for _, path := range valid {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a fuzz corpus file", path)
		}
		tok, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, err := b.verifier.verify(tok); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// FuzzWireClaims checks the verifier's claims decoding (wireClaims, then
// claims) against golang-jwt's own (json.Unmarshal into Claims, whose
// dates are jwt.NumericDate): the same payloads are refused, and the
// accepted ones give equal claims.
func FuzzWireClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"https://app.example","sub":"42","aud":"app","exp":1767229200,"nbf":1767225600,"iat":1767225600,"jti":"j1","name":"Alice","roles":["user","admin"],"sid":"abc"}`,
		`{"aud":["a","b"],"exp":1767229200.75,"iat":"1767225600","nbf":1.7672256e9}`,
		`{"exp":null,"nbf":-1,"iat":0,"aud":null}`,
		`{"EXP":1,"Sub":"x","exp":2}`,
		`{"exp":"soon"}`, `{"exp":true}`, `{"exp":1e400}`, `{"exp":[1]}`, `{"exp":{"a":1}}`,
		`{"aud":[1]}`, `{"aud":{}}`, `{"roles":"admin"}`, `{"sid":1}`,
		`{"exp":9223372036854775807}`, `{"exp":-9.3e18}`, `{"iat":1e-9}`,
		`[]`, `null`, `{"exp":1,}`, ``,
		`{"email":"a@b","email_verified":true}`, `{"email_verified":"true"}`, `{"email":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var want Claims
		wantErr := json.Unmarshal(payload, &want)
		var wire wireClaims
		var got *Claims
		gotErr := json.Unmarshal(payload, &wire)
		if _, isBool := wire.EmailVerified.(bool); gotErr == nil && wire.EmailVerified != nil && !isBool {
			// Deliberately more lenient than a bool field: the string
			// "true" of some IdPs is true, any other value false, never a
			// refusal (TestIdPLink).
			t.Skip()
		}
		if gotErr == nil {
			got, gotErr = wire.claims()
		}
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: golang-jwt's decoding says %v, the verifier's %v", payload, wantErr, gotErr)
		}
		if wantErr == nil && !reflect.DeepEqual(&want, got) {
			t.Fatalf("%q: golang-jwt's decoding gives %+v, the verifier's %+v", payload, want, *got)
		}
	})
}

// wireClaims has a field of the same JSON name for every field of Claims,
// so that a claim added to Claims is not silently dropped by the verifier.
func TestWireClaimsFields(t *testing.T) {
	names := func(v any) []string {
		var out []string
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	one := json.Number("1")
	full := Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: "i", Subject: "s", Audience: jwt.ClaimStrings{"a"}, ID: "j",
			ExpiresAt: jwt.NewNumericDate(fuzzNow), NotBefore: jwt.NewNumericDate(fuzzNow), IssuedAt: jwt.NewNumericDate(fuzzNow)},
		Name: "n", Roles: []string{"r"}, SID: "d", SCH: "h", Email: "e", EmailVerified: true,
	}
	wire := wireClaims{Issuer: "i", Subject: "s", Audience: jwt.ClaimStrings{"a"}, ID: "j",
		ExpiresAt: &one, NotBefore: &one, IssuedAt: &one, Name: "n", Roles: []string{"r"}, SID: "d", SCH: "h",
		Email: "e", EmailVerified: true}
	if a, b := names(full), names(wire); !slices.Equal(a, b) {
		t.Errorf("JSON fields: Claims %v, wireClaims %v", a, b)
	}
	if reflect.TypeFor[Claims]().NumField() != 7 || reflect.TypeFor[jwt.RegisteredClaims]().NumField() != 7 {
		t.Errorf("Claims or jwt.RegisteredClaims changed shape: fill every field in this test and in wireClaims")
	}
}
