package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of the tokens the bridge mints and accepts.
type Claims struct {
	jwt.RegisteredClaims
	Name  string   `json:"name,omitempty"`  // the user's display name
	Roles []string `json:"roles,omitempty"` // the user's roles
	SID   string   `json:"sid,omitempty"`   // keyed hash of the session ID minted from
	SCH   string   `json:"sch,omitempty"`   // keyed hash of the session cookie minted with
	// Email and EmailVerified: what a TrustedIssuer.Link may match on.
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
}

// clone returns a copy of c that shares no slice or date with it.
func (c *Claims) clone() Claims {
	out := *c
	out.Audience = slices.Clone(c.Audience)
	out.Roles = slices.Clone(c.Roles)
	out.ExpiresAt = cloneDate(c.ExpiresAt)
	out.NotBefore = cloneDate(c.NotBefore)
	out.IssuedAt = cloneDate(c.IssuedAt)
	return out
}

func cloneDate(d *jwt.NumericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}

// issuer is a token issuer whose keys are bound to it: a token naming this
// issuer is verified with this issuer's keys only.
type issuer struct {
	name      string
	own       bool // Config.Issuer: its subjects are local users
	validator *jwt.Validator
	algs      []string
	// key returns the verification key for a token's kid and alg.
	key func(kid, alg string) (any, error)
	// link is TrustedIssuer.Link; nil for our own issuer.
	link func(context.Context, Claims) (LocalUser, bool, error)
}

// forbiddenHeaders name keys or key locations inside the token, which the
// bridge never trusts or fetches; crit asks for extensions it does not
// implement (RFC 7515 §4.1.11). The certificate thumbprints x5t and
// x5t#S256 are mere hints, never used to find a key, and some IdPs
// (Microsoft Entra ID) send them in every token: they are ignored.
var forbiddenHeaders = [...]string{"jku", "x5u", "jwk", "x5c", "crit"}

// verifier checks tokens: size and charset first, then forbidden headers,
// the issuer's pinned key and algorithm, the signature (strict base64), and
// the issuer's claims (iss, aud, exp required, nbf and iat with leeway).
type verifier struct {
	parser  *jwt.Parser
	issuers map[string]*issuer
	maxSize int
	now     func() time.Time
	revoked *denylist
	cache   *tokenCache
	// keyFunc is v.key, made once. A copy of the verifier (logout.go)
	// keeps the original's, which reads the same issuers.
	keyFunc jwt.Keyfunc
}

func newVerifier(issuers []*issuer, maxSize int, now func() time.Time, cacheSize int, revoked *denylist) *verifier {
	v := &verifier{
		issuers: make(map[string]*issuer, len(issuers)),
		maxSize: maxSize,
		now:     now,
		revoked: revoked,
		cache:   newTokenCache(cacheSize),
	}
	v.keyFunc = v.key // a method value made once: no closure per verification
	var algs []string
	for _, iss := range issuers {
		v.issuers[iss.name] = iss
		algs = append(algs, iss.algs...)
	}
	// Claims are validated per issuer after the signature; the parser
	// checks structure, header algorithm and signature only.
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(algs),
		jwt.WithStrictDecoding(),
		jwt.WithoutClaimsValidation(),
	)
	return v
}

func newIssuerValidator(name string, audience []string, leeway time.Duration, now func() time.Time) *jwt.Validator {
	return jwt.NewValidator(
		jwt.WithIssuer(name),
		jwt.WithAudience(audience...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	)
}

// jwsChars is 1 for the bytes of a compact JWS, the base64url alphabet and
// the dot, and 0 for every other byte.
var jwsChars = func() (t [256]byte) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") {
		t[c] = 1
	}
	return t
}()

// checkShape refuses oversized tokens and characters outside the base64url
// alphabet and the two dots of a compact JWS, before any decoding (Go's
// base64 decoder skips CR and LF even in strict mode).
func checkShape(tok string, maxSize int) error {
	if len(tok) > maxSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidToken, len(tok), maxSize)
	}
	if !jwsBytes(tok) {
		i := 0
		for jwsChars[tok[i]] == 1 {
			i++
		}
		return fmt.Errorf("%w: character %q outside the base64url alphabet", ErrInvalidToken, tok[i])
	}
	if dots := strings.Count(tok, "."); dots != 2 {
		return fmt.Errorf("%w: %d segments, want 3", ErrInvalidToken, dots+1)
	}
	return nil
}

// jwsBytes reports whether every byte of s is a JWS byte. It looks at
// eight bytes per step and branches once per step: about half the cost of
// a byte-by-byte loop on a token of a few hundred bytes.
func jwsBytes(s string) bool {
	ok := byte(1)
	for len(s) >= 8 {
		b := s[:8]
		ok &= jwsChars[b[0]] & jwsChars[b[1]] & jwsChars[b[2]] & jwsChars[b[3]] &
			jwsChars[b[4]] & jwsChars[b[5]] & jwsChars[b[6]] & jwsChars[b[7]]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		ok &= jwsChars[s[i]]
	}
	return ok == 1
}

// verify returns the verified claims of tok, from the cache when it was
// verified before.
func (v *verifier) verify(tok string) (*cacheEntry, error) { return v.verifyAt(tok, v.now()) }

// verifyAt is verify at now, for a caller that has read the clock already
// (the middleware reads it once per request).
func (v *verifier) verifyAt(tok string, now time.Time) (*cacheEntry, error) {
	if e := v.cache.get(tok, now); e != nil {
		if e.revokedAt(v.revoked, now) {
			return nil, fmt.Errorf("%w: jti or sid revoked", ErrTokenRevoked)
		}
		return e, nil
	}
	if err := checkShape(tok, v.maxSize); err != nil {
		return nil, err
	}
	var wire wireClaims
	if _, err := v.parser.ParseWithClaims(tok, &wire, v.keyFunc); err != nil {
		return nil, tokenError(err)
	}
	claims, err := wire.claims()
	if err != nil {
		return nil, tokenError(err)
	}
	iss := v.issuers[claims.Issuer] // keyFunc found it; checked again all the same
	if iss == nil {
		return nil, tokenError(fmt.Errorf("issuer %q is not trusted", capped(claims.Issuer)))
	}
	if err := iss.validator.Validate(claims); err != nil {
		return nil, tokenError(err)
	}
	if claims.Subject == "" {
		return nil, tokenError(errors.New("token has no sub"))
	}
	e := newCacheEntry(tok, claims, iss)
	if e.revokedAt(v.revoked, now) {
		return nil, fmt.Errorf("%w: jti or sid revoked", ErrTokenRevoked)
	}
	v.cache.put(tok, e, now)
	return e, nil
}

// key is the parser's Keyfunc: it refuses the forbidden headers and an
// unknown typ, then returns the key of the token's issuer for its kid and
// alg.
func (v *verifier) key(t *jwt.Token) (any, error) {
	for _, h := range forbiddenHeaders {
		if _, ok := t.Header[h]; ok {
			return nil, fmt.Errorf("header %q is not accepted", h)
		}
	}
	if typ, ok := t.Header["typ"]; ok {
		if s, _ := typ.(string); s != "JWT" && s != "at+jwt" && s != "application/at+jwt" {
			return nil, fmt.Errorf("header typ %q is not accepted", capped(s))
		}
	}
	claims, _ := t.Claims.(*wireClaims)
	if claims == nil {
		return nil, errors.New("claims of an unexpected type")
	}
	iss := v.issuers[claims.Issuer]
	if iss == nil {
		return nil, fmt.Errorf("issuer %q is not trusted", capped(claims.Issuer))
	}
	kid, ok := t.Header["kid"].(string)
	if _, present := t.Header["kid"]; present && (!ok || kid == "") {
		return nil, errors.New("header kid is not a non-empty string")
	}
	return iss.key(kid, t.Method.Alg())
}

// wireClaims is what a token's payload is decoded into: Claims, with the
// three dates as json.Number. golang-jwt's NumericDate decodes each date
// with a json.Unmarshal of its own, an eighth of a whole HS256
// verification; a json.Number costs no more than the rest of the object,
// and claims converts it as NumericDate does. The jwt.Claims methods fail:
// the claims are validated after conversion, never as they are on the wire.
type wireClaims struct {
	Issuer    string           `json:"iss,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Audience  jwt.ClaimStrings `json:"aud,omitempty"`
	ExpiresAt *json.Number     `json:"exp,omitempty"`
	NotBefore *json.Number     `json:"nbf,omitempty"`
	IssuedAt  *json.Number     `json:"iat,omitempty"`
	ID        string           `json:"jti,omitempty"`
	Name      string           `json:"name,omitempty"`
	Roles     []string         `json:"roles,omitempty"`
	SID       string           `json:"sid,omitempty"`
	SCH       string           `json:"sch,omitempty"`
	Email     string           `json:"email,omitempty"`
	// EmailVerified is a bool, or the string "true" some IdPs send
	// (Amazon Cognito): anything else is false, never a refusal.
	EmailVerified any `json:"email_verified,omitempty"`
}

var errWireClaims = errors.New("bridge: wire claims are not validated; convert them first")

func (*wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, errWireClaims }
func (*wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, errWireClaims }
func (*wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, errWireClaims }
func (*wireClaims) GetIssuer() (string, error)                   { return "", errWireClaims }
func (*wireClaims) GetSubject() (string, error)                  { return "", errWireClaims }
func (*wireClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, errWireClaims }

// claims converts the decoded payload into Claims.
func (w *wireClaims) claims() (*Claims, error) {
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: w.Issuer, Subject: w.Subject, Audience: w.Audience, ID: w.ID},
		Name:             w.Name, Roles: w.Roles, SID: w.SID, SCH: w.SCH, Email: w.Email,
		EmailVerified: w.EmailVerified == true || w.EmailVerified == "true",
	}
	var err error
	if c.ExpiresAt, err = numericDate("exp", w.ExpiresAt); err != nil {
		return nil, err
	}
	if c.NotBefore, err = numericDate("nbf", w.NotBefore); err != nil {
		return nil, err
	}
	if c.IssuedAt, err = numericDate("iat", w.IssuedAt); err != nil {
		return nil, err
	}
	return c, nil
}

// numericDate is NumericDate.UnmarshalJSON's conversion: seconds, their
// fraction in nanoseconds, truncated to jwt.TimePrecision.
func numericDate(name string, n *json.Number) (*jwt.NumericDate, error) {
	if n == nil {
		return nil, nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil, fmt.Errorf("%w: claim %s: %w", jwt.ErrTokenMalformed, name, err)
	}
	sec, frac := math.Modf(f)
	return jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9))), nil
}

// tokenError maps golang-jwt's errors onto the bridge's sentinels, keeping
// the cause.
func tokenError(err error) error {
	if errors.Is(err, jwt.ErrTokenExpired) {
		return fmt.Errorf("%w: %w", ErrTokenExpired, err)
	}
	return fmt.Errorf("%w: %w", ErrInvalidToken, err)
}

// mint signs claims with key.
func mint(key *Key, claims *Claims) (string, error) {
	t := jwt.NewWithClaims(key.method, claims)
	t.Header["kid"] = key.kid
	s, err := t.SignedString(key.sign)
	if err != nil {
		return "", fmt.Errorf("bridge: sign token: %w", err)
	}
	return s, nil
}
