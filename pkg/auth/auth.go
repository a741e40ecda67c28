// Package auth issues and verifies DevOpstic's bearer tokens (HS256 JWTs) and checks the login
// that POST /tokens takes.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthorized wraps every reason a credential is refused.
var ErrUnauthorized = errors.New("unauthorized")

const issuer = "devopstic"

// Tokens issues and verifies tokens with one key.
type Tokens struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewTokens signs with secret; tokens live for ttl.
func NewTokens(secret string, ttl time.Duration) *Tokens {
	return &Tokens{key: []byte(secret), ttl: ttl, now: time.Now}
}

// Claims are what a token says.
type Claims struct {
	jwt.RegisteredClaims
}

// Issue returns a token for subject and when it expires.
func (t *Tokens) Issue(subject string) (string, time.Time, error) {
	now := t.now().UTC().Truncate(time.Second)
	exp := now.Add(t.ttl)
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, fmt.Errorf("token id: %w", err)
	}
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
		ID:        base64.RawURLEncoding.EncodeToString(jti),
	}}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return signed, exp, nil
}

// Verify checks a token's signature, algorithm, issuer and expiry.
func (t *Tokens) Verify(token string) (Claims, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(t.now),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return claims, nil
}

// Login is the one account configured by DEVOPSTIC_USERNAME and DEVOPSTIC_PASSWORD.
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
