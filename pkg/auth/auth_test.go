package auth

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// issuedAt is the clock of the tokens under test; it has a fraction of a second on purpose.
var issuedAt = time.Date(2026, 11, 25, 10, 0, 0, 700_000_000, time.UTC)

// tokensAt returns Tokens with one key whose clock reads now.
func tokensAt(secret string, ttl time.Duration, now time.Time) *Tokens {
	return keysAt([]string{secret}, ttl, now)
}

// keysAt returns Tokens with keys whose clock reads now.
func keysAt(secrets []string, ttl time.Duration, now time.Time) *Tokens {
	t := NewTokens(secrets, ttl, DefaultRefreshWindow)
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

func validClaims() Claims {
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "devopstic",
			Subject:   "admin",
			IssuedAt:  jwt.NewNumericDate(issuedAt),
			ExpiresAt: jwt.NewNumericDate(issuedAt.Add(time.Hour)),
		},
		Role:    RoleAdmin,
		OrigIat: jwt.NewNumericDate(issuedAt),
	}
}

func TestIssueVerify(t *testing.T) {
	t.Parallel()
	tk := tokensAt(testSecret, 2*time.Hour, issuedAt)
	token, exp, err := tk.Issue("admin", RoleAdmin)
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
	require.Equal(t, RoleAdmin, claims.Role)
	require.Equal(t, claims.IssuedAt.Time, claims.OrigIat.Time, "a login's token starts its refresh window")

	other, _, err := tk.Issue("admin", RoleAdmin)
	require.NoError(t, err)
	otherClaims, err := tk.Verify(other)
	require.NoError(t, err)
	require.NotEqual(t, claims.ID, otherClaims.ID, "every token has its own id")
}

func TestVerifyWithRealClock(t *testing.T) {
	t.Parallel()
	tk := NewTokens([]string{testSecret}, time.Hour, DefaultRefreshWindow)
	token, exp, err := tk.Issue("ci", RoleReader)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), exp, 2*time.Second)
	claims, err := tk.Verify(token)
	require.NoError(t, err)
	require.Equal(t, "ci", claims.Subject)
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	issuer := tokensAt(testSecret, time.Hour, issuedAt)
	good, _, err := issuer.Issue("admin", RoleAdmin)
	require.NoError(t, err)
	otherKey, _, err := tokensAt(strings.Repeat("x", 32), time.Hour, issuedAt).Issue("admin", RoleAdmin)
	require.NoError(t, err)
	noRole := validClaims()
	noRole.Role = ""
	badRole := validClaims()
	badRole.Role = "root"
	noOrigIat := validClaims()
	noOrigIat.OrigIat = nil
	noSubject := validClaims()
	noSubject.Subject = ""

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
		// The signature's last base64url character carries two unused bits: another spelling
		// of the same bytes, which a lenient decoder accepts (1 token in 16 ends in 'A', and
		// the keep-alive test's "last byte changed" made it 'B').
		{name: "signature spelled with non-zero padding bits", token: paddingBitsSet(t, good), now: issuedAt},
		{name: "no role (an older version's token)", token: signed(t, jwt.SigningMethodHS256, []byte(testSecret), noRole), now: issuedAt},
		{name: "unknown role", token: signed(t, jwt.SigningMethodHS256, []byte(testSecret), badRole), now: issuedAt},
		{name: "no orig_iat", token: signed(t, jwt.SigningMethodHS256, []byte(testSecret), noOrigIat), now: issuedAt},
		{name: "no subject", token: signed(t, jwt.SigningMethodHS256, []byte(testSecret), noSubject), now: issuedAt},
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

// paddingBitsSet spells token's signature with the two unused low bits of its last character
// set: the same 32 bytes when decoded leniently.
func paddingBitsSet(t *testing.T, token string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	require.GreaterOrEqual(t, last, 0)
	require.Zero(t, last&3, "the issuer's encoding is canonical")
	spelled := token[:len(token)-1] + string(alphabet[last|3])
	sig, err := base64.RawURLEncoding.DecodeString(spelled[strings.LastIndexByte(spelled, '.')+1:])
	require.NoError(t, err)
	want, err := base64.RawURLEncoding.DecodeString(token[strings.LastIndexByte(token, '.')+1:])
	require.NoError(t, err)
	require.Equal(t, want, sig, "the same signature bytes: the test proves something only if so")
	return spelled
}

func TestVerifyJustBeforeExpiry(t *testing.T) {
	t.Parallel()
	token, _, err := tokensAt(testSecret, time.Hour, issuedAt).Issue("admin", RoleAdmin)
	require.NoError(t, err)
	_, err = tokensAt(testSecret, time.Hour, time.Date(2026, 11, 25, 10, 59, 59, 0, time.UTC)).Verify(token)
	require.NoError(t, err)
}

// A verified token is remembered, but still expires on time and does not vouch for a
// tampered copy of itself.
func TestVerifyRemembersOnlyWhatItChecked(t *testing.T) {
	t.Parallel()
	now := issuedAt
	tk := NewTokens([]string{testSecret}, time.Hour, DefaultRefreshWindow)
	tk.now = func() time.Time { return now }
	token, _, err := tk.Issue("ci", RoleReader)
	require.NoError(t, err)
	for range 2 {
		claims, err := tk.Verify(token)
		require.NoError(t, err)
		require.Equal(t, "ci", claims.Subject)
	}
	_, err = tk.Verify(tamper(t, token))
	require.ErrorIs(t, err, ErrUnauthorized)

	now = issuedAt.Add(time.Hour)
	_, err = tk.Verify(token)
	require.ErrorIs(t, err, ErrExpired)
}

// tamper swaps the subject of a token's payload for another, keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	claims := validClaims()
	claims.Subject = "root"
	claims.Role = RoleAdmin
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

// A key is rotated by configuring the new one first: tokens signed with the old one keep
// working while both are configured, and stop when the old one is removed.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 32)
	before := tokensAt(oldKey, time.Hour, issuedAt)
	both := keysAt([]string{newKey, oldKey}, time.Hour, issuedAt)
	after := tokensAt(newKey, time.Hour, issuedAt)

	oldToken, _, err := before.Issue("admin", RoleAdmin)
	require.NoError(t, err)
	_, err = both.Verify(oldToken)
	require.NoError(t, err, "an old token works while both keys are configured")

	newToken, _, err := both.Issue("admin", RoleAdmin)
	require.NoError(t, err)
	_, err = after.Verify(newToken)
	require.NoError(t, err, "the first key signs")
	_, err = before.Verify(newToken)
	require.ErrorIs(t, err, ErrUnauthorized, "the new token is not signed with the old key")

	_, err = after.Verify(oldToken)
	require.ErrorIs(t, err, ErrUnauthorized, "the old key removed, its tokens stop")
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	login, _, err := tokensAt(testSecret, 24*time.Hour, issuedAt).Issue("ana", RoleReader)
	require.NoError(t, err)
	claims, err := tokensAt(testSecret, 24*time.Hour, issuedAt).Verify(login)
	require.NoError(t, err)

	// Refreshed a day later (before the token expires): a new token for the same login.
	later := issuedAt.Add(23 * time.Hour)
	refreshed, exp, err := tokensAt(testSecret, 24*time.Hour, later).Refresh(claims)
	require.NoError(t, err)
	require.Equal(t, later.Truncate(time.Second).Add(24*time.Hour), exp)
	rc, err := tokensAt(testSecret, 24*time.Hour, later).Verify(refreshed)
	require.NoError(t, err)
	require.Equal(t, "ana", rc.Subject)
	require.Equal(t, RoleReader, rc.Role)
	require.Equal(t, claims.OrigIat.Time, rc.OrigIat.Time, "the login time carries over")
	require.NotEqual(t, claims.ID, rc.ID)

	// Near the end of the window the new token ends with the window.
	window := issuedAt.Truncate(time.Second).Add(DefaultRefreshWindow)
	_, exp, err = tokensAt(testSecret, 24*time.Hour, window.Add(-time.Hour)).Refresh(rc)
	require.NoError(t, err)
	require.Equal(t, window, exp)

	// After it, no more.
	_, _, err = tokensAt(testSecret, 24*time.Hour, window).Refresh(rc)
	require.ErrorIs(t, err, ErrRefreshWindow)

	// A TTL longer than the window is the window.
	long := NewTokens([]string{testSecret}, 30*24*time.Hour, DefaultRefreshWindow)
	long.now = func() time.Time { return issuedAt.Add(20 * 24 * time.Hour) }
	_, _, err = long.Refresh(claims)
	require.NoError(t, err)
}

func TestScopes(t *testing.T) {
	t.Parallel()
	scopes, err := ParseScopes("events:write, metrics:read,events:write")
	require.NoError(t, err)
	require.Equal(t, []Scope{ScopeWrite, ScopeRead}, scopes)
	for _, bad := range []string{"", "events:read", "admin", "events:write,"} {
		_, err := ParseScopes(bad)
		require.Error(t, err, bad)
	}
	_, err = ParseRole("root")
	require.Error(t, err)

	reader := Principal{Subject: "ana", Scopes: RoleReader.Scopes(), Claims: Claims{Role: RoleReader}}
	require.NoError(t, reader.Allow(ScopeRead))
	err = reader.Allow(ScopeWrite)
	require.ErrorIs(t, err, ErrForbidden)
	require.ErrorContains(t, err, `the token of "ana" (role reader) may not do this: it needs the scope events:write`)

	ci := Principal{Subject: "jenkins", APIKey: true, Scopes: []Scope{ScopeWrite}}
	require.NoError(t, ci.Allow(ScopeWrite))
	require.ErrorContains(t, ci.Allow(ScopeRead), `the API key "jenkins" (scope events:write) may not do this: it needs the scope metrics:read`)

	admin := Principal{Subject: "root", Scopes: RoleAdmin.Scopes()}
	require.NoError(t, admin.Allow(ScopeWrite))
	require.NoError(t, admin.Allow(ScopeRead))
}

func TestPasswords(t *testing.T) {
	t.Parallel()
	hash, err := HashPassword("correct horse")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(hash, "$2a$11$"), hash)
	require.NoError(t, CheckPassword(hash, "correct horse"))
	require.ErrorIs(t, CheckPassword(hash, "correct horsE"), ErrUnauthorized)
	require.ErrorIs(t, CheckNoUser("correct horse"), ErrUnauthorized)

	_, err = HashPassword("short")
	require.ErrorIs(t, err, ErrBadPassword)
	_, err = HashPassword(strings.Repeat("x", 73))
	require.ErrorIs(t, err, ErrBadPassword, "bcrypt would ignore the bytes after 72")
}

// BenchmarkVerify is a token's first verification (signature and JSON claims) against its
// repeats, which the ingest serves from memory.
func BenchmarkVerify(b *testing.B) {
	tk := NewTokens([]string{testSecret}, time.Hour, DefaultRefreshWindow)
	token, _, err := tk.Issue("ci", RoleReader)
	require.NoError(b, err)
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			if _, err := tk.verify(token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("repeat", func(b *testing.B) {
		for b.Loop() {
			if _, err := tk.Verify(token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
