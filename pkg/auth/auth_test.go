package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// issuedAt is the clock of the tokens under test; it has a fraction of a second on purpose.
var issuedAt = time.Date(2026, 11, 25, 10, 0, 0, 700_000_000, time.UTC)

// tokensAt returns Tokens whose clock reads now.
func tokensAt(secret string, ttl time.Duration, now time.Time) *Tokens {
	t := NewTokens(secret, ttl)
	t.now = func() time.Time { return now }
	return t
}

// signed makes a token with any method and claims, the way an attacker could.
func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func validClaims() jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Issuer:    "devopstic",
		Subject:   "admin",
		IssuedAt:  jwt.NewNumericDate(issuedAt),
		ExpiresAt: jwt.NewNumericDate(issuedAt.Add(time.Hour)),
	}
}

func TestIssueVerify(t *testing.T) {
	t.Parallel()
	tk := tokensAt(testSecret, 2*time.Hour, issuedAt)
	token, exp, err := tk.Issue("admin")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), exp)
	require.Equal(t, 2, strings.Count(token, "."))

	claims, err := tk.Verify(token)
	require.NoError(t, err)
	require.Equal(t, "admin", claims.Subject)
	require.Equal(t, "devopstic", claims.Issuer)
	require.Equal(t, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), claims.IssuedAt.UTC())
	require.Equal(t, exp, claims.ExpiresAt.UTC())
	require.Equal(t, 2*time.Hour, claims.ExpiresAt.Sub(claims.IssuedAt.Time))
	require.NotEmpty(t, claims.ID)

	other, _, err := tk.Issue("admin")
	require.NoError(t, err)
	otherClaims, err := tk.Verify(other)
	require.NoError(t, err)
	require.NotEqual(t, claims.ID, otherClaims.ID, "every token has its own id")
}

func TestVerifyWithRealClock(t *testing.T) {
	t.Parallel()
	tk := NewTokens(testSecret, time.Hour)
	token, exp, err := tk.Issue("ci")
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), exp, 2*time.Second)
	claims, err := tk.Verify(token)
	require.NoError(t, err)
	require.Equal(t, "ci", claims.Subject)
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	issuer := tokensAt(testSecret, time.Hour, issuedAt)
	good, _, err := issuer.Issue("admin")
	require.NoError(t, err)
	otherKey, _, err := tokensAt(strings.Repeat("x", 32), time.Hour, issuedAt).Issue("admin")
	require.NoError(t, err)

	noExp := validClaims()
	noExp.ExpiresAt = nil
	wrongIssuer := validClaims()
	wrongIssuer.Issuer = "someone-else"

	tests := []struct {
		name  string
		token string
		now   time.Time
	}{
		{
			name:  "signed with another key",
			token: otherKey,
			now:   issuedAt,
		},
		{name: "expired", token: good, now: issuedAt.Add(2 * time.Hour)},
		// exp is 11:00:00 (iat truncated to the second plus one hour); a token is dead at exp.
		{name: "at expiry", token: good, now: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)},
		{name: "alg none", token: signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims()), now: issuedAt},
		{name: "HS512 with the right key", token: signed(t, jwt.SigningMethodHS512, []byte(testSecret), validClaims()), now: issuedAt},
		{name: "HS384 with the right key", token: signed(t, jwt.SigningMethodHS384, []byte(testSecret), validClaims()), now: issuedAt},
		{name: "no expiry", token: signed(t, jwt.SigningMethodHS256, []byte(testSecret), noExp), now: issuedAt},
		{name: "wrong issuer", token: signed(t, jwt.SigningMethodHS256, []byte(testSecret), wrongIssuer), now: issuedAt},
		{name: "tampered payload", token: tamper(t, good), now: issuedAt},
		{name: "garbage", token: "not a token", now: issuedAt},
		{name: "three garbage parts", token: "a.b.c", now: issuedAt},
		{name: "empty", token: "", now: issuedAt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			claims, err := tokensAt(testSecret, time.Hour, tt.now).Verify(tt.token)
			require.ErrorIs(t, err, ErrUnauthorized)
			require.Equal(t, Claims{}, claims)
		})
	}
}

func TestVerifyJustBeforeExpiry(t *testing.T) {
	t.Parallel()
	token, _, err := tokensAt(testSecret, time.Hour, issuedAt).Issue("admin")
	require.NoError(t, err)
	_, err = tokensAt(testSecret, time.Hour, time.Date(2026, 11, 25, 10, 59, 59, 0, time.UTC)).Verify(token)
	require.NoError(t, err)
}

// tamper swaps the subject of a token's payload for another, keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	claims := validClaims()
	claims.Subject = "root"
	forged := signed(t, jwt.SigningMethodHS256, []byte("whatever-key-whatever-key-whatev"), claims)
	return parts[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
}

func TestLoginCheck(t *testing.T) {
	t.Parallel()
	login := Login{Username: "admin", Password: "hunter2"}
	tests := []struct {
		name     string
		login    Login
		username string
		password string
		wantErr  error
	}{
		{name: "right pair", login: login, username: "admin", password: "hunter2"},
		{name: "wrong user", login: login, username: "root", password: "hunter2", wantErr: ErrUnauthorized},
		{name: "wrong password", login: login, username: "admin", password: "hunter3", wantErr: ErrUnauthorized},
		{name: "both wrong", login: login, username: "root", password: "toor", wantErr: ErrUnauthorized},
		{name: "user differs in case", login: login, username: "Admin", password: "hunter2", wantErr: ErrUnauthorized},
		{name: "password prefix", login: login, username: "admin", password: "hunter", wantErr: ErrUnauthorized},
		{name: "empty credentials", login: login, username: "", password: "", wantErr: ErrUnauthorized},
		{name: "no configured user, empty credentials", login: Login{}, username: "", password: "", wantErr: ErrUnauthorized},
		{name: "no configured user, password matches", login: Login{Password: "hunter2"}, username: "", password: "hunter2", wantErr: ErrUnauthorized},
		{name: "no configured user, anything", login: Login{}, username: "admin", password: "hunter2", wantErr: ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.login.Check(tt.username, tt.password)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}
