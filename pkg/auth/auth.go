// Package auth is who may do what in DevOpstic: the bearer tokens POST /tokens issues (HS256
// JWTs), the logins it takes (the configured account and the users in Postgres, bcrypt), the
// API keys CI pipelines use, the roles and scopes that authorize a request, and the throttle
// on failed logins.
//
// Every comparison of a secret is constant-time: HMAC signatures with hmac.Equal (inside the
// JWT library), the configured password with subtle.ConstantTimeCompare, database passwords
// with bcrypt, API keys by looking up their SHA-256 (the lookup's timing depends on the hash,
// which tells an attacker nothing about a key's bytes).
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Why a request is refused. ErrUnauthorized (401): no credential, or a bad one.
// ErrForbidden (403): a good credential that may not do this.
var (
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
)

// Role is a user's role.
type Role string

// The roles: an admin reads and writes; a reader reads.
const (
	RoleAdmin  Role = "admin"
	RoleReader Role = "reader"
)

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleReader:
		return r, nil
	}
	return "", fmt.Errorf("role must be admin or reader, not %q", s)
}

// Scope is one thing a credential may do.
type Scope string

// The scopes: posting events, and reading events, changes and metrics.
const (
	ScopeWrite Scope = "events:write"
	ScopeRead  Scope = "metrics:read"
)

// ParseScopes reads a comma-separated list of scopes.
func ParseScopes(s string) ([]Scope, error) {
	var scopes []Scope
	for _, part := range strings.Split(s, ",") {
		switch sc := Scope(strings.TrimSpace(part)); sc {
		case ScopeWrite, ScopeRead:
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		default:
			return nil, fmt.Errorf("scope must be events:write, metrics:read or both (comma-separated), not %q", part)
		}
	}
	return scopes, nil
}

// Scopes are what a role may do.
func (r Role) Scopes() []Scope {
	switch r {
	case RoleAdmin:
		return []Scope{ScopeWrite, ScopeRead}
	case RoleReader:
		return []Scope{ScopeRead}
	}
	return nil
}

// Principal is who a request acts as, and what it may do.
type Principal struct {
	// Subject is the user's name, or the API key's name.
	Subject string
	// APIKey is true for an API key, false for a token.
	APIKey bool
	Scopes []Scope
	// Claims are the token's (tokens only).
	Claims Claims
}

// Allow is nil when p has scope, else an ErrForbidden that says what p lacks.
func (p Principal) Allow(scope Scope) error {
	if slices.Contains(p.Scopes, scope) {
		return nil
	}
	what := fmt.Sprintf("the token of %q (role %s)", p.Subject, p.Claims.Role)
	if p.APIKey {
		what = fmt.Sprintf("the API key %q (scope %s)", p.Subject, joinScopes(p.Scopes))
	}
	return fmt.Errorf("%w: %s may not do this: it needs the scope %s", ErrForbidden, what, scope)
}

func joinScopes(scopes []Scope) string {
	s := make([]string, len(scopes))
	for i, sc := range scopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ",")
}

const issuer = "devopstic"

// Claims are what a token says: the registered claims (sub, exp, iat, jti, iss), the role, and
// when the login that began its chain of refreshes happened (orig_iat, the original API's name).
type Claims struct {
	jwt.RegisteredClaims
	Role    Role             `json:"role"`
	OrigIat *jwt.NumericDate `json:"orig_iat"`
}

// Tokens issues and verifies tokens. It signs with the first key and accepts any, so that a key
// can be rotated without downtime: add the new one first, remove the old one after a TTL.
type Tokens struct {
	keys          [][]byte
	ttl           time.Duration
	refreshWindow time.Duration
	now           func() time.Time

	// verified remembers the claims of tokens whose signature and claims have been checked,
	// by the whole token (signature included): a client sends the same token with every
	// request, and decoding its JSON claims was the largest cost of a single-event POST.
	mu       sync.Mutex
	verified map[string]Claims
}

// verifiedCap bounds the verified tokens kept; when it is reached they are forgotten at once.
const verifiedCap = 10_000

// DefaultRefreshWindow is how long after a login its tokens may be refreshed, unless the TTL
// is longer.
const DefaultRefreshWindow = 7 * 24 * time.Hour

// NewTokens signs with secrets[0] and accepts any of secrets; tokens live for ttl and may be
// refreshed until max(ttl, refreshWindow) after their login.
func NewTokens(secrets []string, ttl, refreshWindow time.Duration) *Tokens {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = []byte(s)
	}
	return &Tokens{keys: keys, ttl: ttl, refreshWindow: max(ttl, refreshWindow), now: time.Now, verified: map[string]Claims{}}
}

// Errors of refused tokens whose reason a client may be told.
var (
	ErrExpired       = fmt.Errorf("%w: the token has expired: get a new one from POST /tokens", ErrUnauthorized)
	ErrRefreshWindow = fmt.Errorf("%w: the token's refresh window is over: log in again (POST /tokens)", ErrUnauthorized)
	ErrRevokedToken  = fmt.Errorf("%w: the token was revoked (its user was removed or changed password): log in again", ErrUnauthorized)
)

// Issue returns a new login's token for subject with role, and when it expires.
func (t *Tokens) Issue(subject string, role Role) (string, time.Time, error) {
	now := t.now().UTC().Truncate(time.Second)
	return t.sign(subject, role, now, now.Add(t.ttl))
}

// Refresh returns a new token for the same login as c, valid for the TTL but never beyond the
// login's refresh window; ErrRefreshWindow once that is over.
func (t *Tokens) Refresh(c Claims) (string, time.Time, error) {
	now := t.now().UTC().Truncate(time.Second)
	end := c.OrigIat.UTC().Add(t.refreshWindow)
	if !now.Before(end) {
		return "", time.Time{}, ErrRefreshWindow
	}
	exp := now.Add(t.ttl)
	if exp.After(end) {
		exp = end
	}
	return t.sign(c.Subject, c.Role, c.OrigIat.Time, exp)
}

func (t *Tokens) sign(subject string, role Role, login, exp time.Time) (string, time.Time, error) {
	if len(t.keys) == 0 {
		return "", time.Time{}, errors.New("sign token: no key configured (DEVOPSTIC_JWT_SECRET)")
	}
	now := t.now().UTC().Truncate(time.Second)
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, fmt.Errorf("token id: %w", err)
	}
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
		Role:    role,
		OrigIat: jwt.NewNumericDate(login.UTC().Truncate(time.Second)),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.keys[0])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return signed, exp, nil
}

// Verify checks a token's signature (against every key), algorithm (HS256 only: "none" and
// the others are refused before any key is tried), issuer, expiry and claims.
func (t *Tokens) Verify(token string) (Claims, error) {
	t.mu.Lock()
	claims, ok := t.verified[token]
	t.mu.Unlock()
	if ok {
		// Only time can have changed since the token was checked.
		if !t.now().Before(claims.ExpiresAt.Time) {
			return Claims{}, ErrExpired
		}
		return claims, nil
	}
	claims, err := t.verify(token)
	if err != nil {
		return Claims{}, err
	}
	t.mu.Lock()
	if len(t.verified) >= verifiedCap {
		clear(t.verified)
	}
	// A copy: the caller's string may be borrowed from a request buffer that the next
	// request overwrites, and a map key must never change.
	t.verified[strings.Clone(token)] = claims
	t.mu.Unlock()
	return claims, nil
}

func (t *Tokens) verify(token string) (Claims, error) {
	keys := make([]jwt.VerificationKey, len(t.keys))
	for i, k := range t.keys {
		keys[i] = k
	}
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return jwt.VerificationKeySet{Keys: keys}, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		// One spelling per token: base64url's last character has unused bits, and a lenient
		// decoder accepts four strings for each signature.
		jwt.WithStrictDecoding(),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(t.now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrExpired
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	if claims.Subject == "" || claims.OrigIat == nil || claims.Role.Scopes() == nil {
		return Claims{}, fmt.Errorf("%w: the token lacks sub, role or orig_iat (issued by an older version?): log in again", ErrUnauthorized)
	}
	return claims, nil
}

// Login is the one account configured by DEVOPSTIC_USERNAME and DEVOPSTIC_PASSWORD (an admin).
// Its zero value accepts no one.
type Login struct {
	Username, Password string
}

// Check compares both fields in constant time, so neither a wrong username nor a wrong
// password can be told apart by timing.
func (l Login) Check(username, password string) error {
	userOK := subtle.ConstantTimeCompare([]byte(username), []byte(l.Username))
	passOK := subtle.ConstantTimeCompare([]byte(password), []byte(l.Password))
	if userOK&passOK != 1 || l.Username == "" {
		return fmt.Errorf("%w: wrong username or password", ErrUnauthorized)
	}
	return nil
}
