package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// stackSecret is startStack's DEVOPSTIC_JWT_SECRET; the env login is ci / hunter2-hunter2.
var stackSecret = strings.Repeat("s", 40)

const deployEvent = `{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"abc123","timestamp":1700000000}`

// protectedRoutes are every route that takes a credential, with the scope it needs ("" for
// any). {cred} in a path is where the credential goes instead of the Authorization header.
var protectedRoutes = []struct {
	method, path string
	scope        auth.Scope
}{
	{"GET", "/refresh_token", ""},
	{"POST", "/events", auth.ScopeWrite},
	{"POST", "/webhook/{cred}/events", auth.ScopeWrite},
	{"POST", "/cdevents", auth.ScopeWrite},
	{"POST", "/webhook/{cred}/cdevents", auth.ScopeWrite},
	{"GET", "/events", auth.ScopeRead},
	{"GET", "/commits", auth.ScopeRead},
	{"GET", "/api/v1/metrics/dora", auth.ScopeRead},
	{"GET", "/api/v1/pipelines", auth.ScopeRead},
}

// httpCall sends one request from client with credential as a bearer token (or in the path).
func httpCall(t testing.TB, client *http.Client, base, method, path, credential string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	if strings.Contains(path, "{cred}") {
		path = strings.Replace(path, "{cred}", credential, 1)
		credential = ""
	}
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, out
}

func (s *stack) callRoute(method, path, credential string) (int, []byte) {
	s.t.Helper()
	if strings.HasSuffix(path, "/cdevents") {
		// A CloudEvent in structured mode, with the credential where the route takes it.
		token := s.token
		defer func() { s.token = token }()
		s.token = credential
		if strings.Contains(path, "{cred}") {
			path, s.token = strings.Replace(path, "{cred}", credential, 1), ""
		}
		status, out := s.sendCDEvents(structuredMode, path, mustRead(s.t, "../../pkg/cdevents/testdata/v0.5/service_deployed.json"))
		return status, []byte(out)
	}
	var body []byte
	if method == "POST" {
		body = []byte(deployEvent)
	}
	status, _, out := httpCall(s.t, http.DefaultClient, s.base, method, path, credential, body)
	return status, out
}

// cli runs a user or apikey command against the stack, as an operator would, with stdin as
// standard input; it returns standard output.
func (s *stack) cli(stdin string, args ...string) (string, error) {
	s.t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := access(ctx, s.cfg, args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), err
}

// mustCLI is cli that must succeed.
func (s *stack) mustCLI(stdin string, args ...string) string {
	s.t.Helper()
	out, err := s.cli(stdin, args...)
	require.NoError(s.t, err, "devopstic %s", strings.Join(args, " "))
	return out
}

// newKey creates an API key with the CLI and returns it once the ingest knows it. A new key
// reaches the ingest as a revocation does, through its watch of the auth bucket: within
// moments, not necessarily before the command returns.
func (s *stack) newKey(name, scope string) string {
	s.t.Helper()
	key := strings.TrimSpace(s.mustCLI("", "apikey", "create", "--name", name, "--scope", scope))
	require.True(s.t, auth.IsAPIKey(key), key)
	created := time.Now()
	for {
		// Any answer but 401 (200, or 403 for a write-only key, or 503 without Postgres)
		// means the key was recognised.
		status, body := s.callRoute("GET", "/api/v1/pipelines", key)
		if status != http.StatusUnauthorized {
			break
		}
		require.Less(s.t, time.Since(created), 30*time.Second, "the new key is still unknown: %s", body)
		time.Sleep(2 * time.Millisecond)
	}
	return key
}

// login gets a token for username.
func (s *stack) login(username, password string) string {
	s.t.Helper()
	status, _, out := httpCall(s.t, http.DefaultClient, s.base, "POST", "/tokens", "",
		[]byte(fmt.Sprintf(`{"username":%q,"password":%q}`, username, password)))
	require.Equal(s.t, http.StatusOK, status, "%s", out)
	var tok struct{ Token string }
	require.NoError(s.t, json.Unmarshal(out, &tok))
	return tok.Token
}

// forge signs claims with key, as anyone holding a key could.
func forge(t testing.TB, method jwt.SigningMethod, key any, claims auth.Claims) string {
	t.Helper()
	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return token
}

func claimsAt(subject string, role auth.Role, login, exp time.Time) auth.Claims {
	return auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "devopstic", Subject: subject, ID: "x",
			IssuedAt: jwt.NewNumericDate(login), ExpiresAt: jwt.NewNumericDate(exp),
		},
		Role: role, OrigIat: jwt.NewNumericDate(login),
	}
}

// withPayload swaps a token's payload for claims, keeping its header and signature.
func withPayload(t testing.TB, token string, claims auth.Claims) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
}

// Every protected route refuses, with 401 and nothing done, a request without a credential,
// with an expired token, a token signed by another key, an alg "none" token, a tampered token,
// a revoked or unknown API key, and the token of a removed user.
func TestEveryProtectedRouteRefusesBadCredentials(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	s.mustCLI("reader-password-1\n", "user", "add", "ana", "--role", "reader")
	readerToken := s.login("ana", "reader-password-1")
	now := time.Now()

	revoked := s.newKey("jenkins", "events:write,metrics:read")
	s.mustCLI("", "apikey", "revoke", "jenkins")
	gone := s.login("ana", "reader-password-1")
	s.mustCLI("", "user", "remove", "ana")
	unknown, _, err := auth.NewAPIKey()
	require.NoError(t, err)

	credentials := map[string]string{
		"no credential":            "",
		"expired token":            forge(t, jwt.SigningMethodHS256, []byte(stackSecret), claimsAt("ci", auth.RoleAdmin, now.Add(-2*time.Hour), now.Add(-time.Hour))),
		"signed by another key":    forge(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 40)), claimsAt("ci", auth.RoleAdmin, now, now.Add(time.Hour))),
		"alg none":                 forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt("ci", auth.RoleAdmin, now, now.Add(time.Hour))),
		"HS512 with the right key": forge(t, jwt.SigningMethodHS512, []byte(stackSecret), claimsAt("ci", auth.RoleAdmin, now, now.Add(time.Hour))),
		"tampered payload":         withPayload(t, readerToken, claimsAt("ana", auth.RoleAdmin, now, now.Add(time.Hour))),
		"revoked API key":          revoked,
		"unknown API key":          unknown,
		"removed user's token":     gone,
		"not a token":              "hello",
	}
	for _, r := range protectedRoutes {
		for name, credential := range credentials {
			if credential == "" && strings.Contains(r.path, "{cred}") {
				credential = "-" // an empty path segment is no route at all (404)
			}
			status, body := s.callRoute(r.method, r.path, credential)
			require.Equal(t, http.StatusUnauthorized, status, "%s %s with %s: %s", r.method, r.path, name, body)
			require.Contains(t, string(body), `"error":"unauthorized: `)
			if credential != "" {
				require.NotContains(t, string(body), credential, "the answer does not echo the credential")
			}
		}
	}
	_, body := s.callRoute("GET", "/events", credentials["expired token"])
	require.Contains(t, string(body), "the token has expired")
	_, body = s.callRoute("POST", "/events", revoked)
	require.Contains(t, string(body), "the API key was revoked")
	_, body = s.callRoute("GET", "/events", gone)
	require.Contains(t, string(body), "the token was revoked")
	require.Zero(t, s.streamMessages(), "nothing refused reached the stream")
}

// Readers read, writers write, admins do both; the wrong scope is a 403 that says which.
func TestRolesAndScopes(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	s.mustCLI("reader-password-1\n", "user", "add", "ana", "--role", "reader")
	s.mustCLI("admin-password-1\n", "user", "add", "bob", "--role", "admin")
	credentials := map[string]struct {
		credential string
		scopes     []auth.Scope
	}{
		"env admin token":    {s.token, []auth.Scope{auth.ScopeWrite, auth.ScopeRead}},
		"db admin token":     {s.login("bob", "admin-password-1"), []auth.Scope{auth.ScopeWrite, auth.ScopeRead}},
		"reader token":       {s.login("ana", "reader-password-1"), []auth.Scope{auth.ScopeRead}},
		"events:write key":   {s.newKey("jenkins", "events:write"), []auth.Scope{auth.ScopeWrite}},
		"metrics:read key":   {s.newKey("grafana", "metrics:read"), []auth.Scope{auth.ScopeRead}},
		"read and write key": {s.newKey("both", "metrics:read,events:write"), []auth.Scope{auth.ScopeWrite, auth.ScopeRead}},
	}
	for name, c := range credentials {
		for _, r := range protectedRoutes {
			status, body := s.callRoute(r.method, r.path, c.credential)
			switch {
			case r.scope == "" && auth.IsAPIKey(c.credential):
				require.Equal(t, http.StatusForbidden, status, "%s: %s %s: %s", name, r.method, r.path, body)
				require.Contains(t, string(body), "refreshes tokens")
			case r.scope == "" || slices.Contains(c.scopes, r.scope):
				require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, status, "%s: %s %s: %s", name, r.method, r.path, body)
			default:
				require.Equal(t, http.StatusForbidden, status, "%s: %s %s: %s", name, r.method, r.path, body)
				require.Contains(t, string(body), "may not do this: it needs the scope "+string(r.scope))
			}
		}
	}

	// A refreshed token keeps its user, role and login time.
	status, body := s.callRoute("GET", "/refresh_token", credentials["reader token"].credential)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var tok struct{ Token string }
	require.NoError(t, json.Unmarshal(body, &tok))
	claims, err := auth.NewTokens([]string{stackSecret}, time.Hour, 0).Verify(tok.Token)
	require.NoError(t, err)
	require.Equal(t, "ana", claims.Subject)
	require.Equal(t, auth.RoleReader, claims.Role)
	status, _ = s.callRoute("POST", "/events", tok.Token)
	require.Equal(t, http.StatusForbidden, status)
}

// clientFrom is an HTTP client whose connections come from ip (any of 127.0.0.0/8 on Linux):
// another client address, over real TCP.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	// A failure bound, not a measurement: a wrong login costs a bcrypt check, which takes
	// seconds under the race detector on two cores shared with the rest of the suite, and the
	// throttle tests send dozens at once.
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 3 * time.Minute}
}

func tryLogin(t *testing.T, s *stack, from, username, password string) (int, http.Header, string) {
	t.Helper()
	status, h, out := httpCall(t, clientFrom(from), s.base, "POST", "/tokens", "",
		[]byte(fmt.Sprintf(`{"username":%q,"password":%q}`, username, password)))
	return status, h, string(out)
}

// Guessing passwords from one address is refused with 429 after the configured attempts,
// right password included, while the user logs in from another address; guessing one
// username from many addresses hits the per-user limit.
func TestLoginBruteForce(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_LOGIN_ATTEMPTS", "5"), withEnv("DEVOPSTIC_LOGIN_USER_ATTEMPTS", "12"),
		withEnv("DEVOPSTIC_LOGIN_WINDOW", "1m"))
	s.mustCLI("database-password\n", "user", "add", "dana", "--role", "reader")

	first := time.Now() // the window starts at the first attempt, a little after this
	for i := range 5 {
		status, _, body := tryLogin(t, s, "127.0.0.2", "ci", fmt.Sprintf("guess-%d", i))
		require.Equal(t, http.StatusUnauthorized, status, "%s", body)
	}
	start := time.Now()
	status, h, body := tryLogin(t, s, "127.0.0.2", "ci", "guess-5")
	require.Equal(t, http.StatusTooManyRequests, status, "%s", body)
	retry, err := strconv.Atoi(h.Get("Retry-After"))
	require.NoError(t, err, "Retry-After: %q", h.Get("Retry-After"))
	// The rest of the minute that began with the first attempt, in whole seconds rounded up:
	// however long the five bcrypt checks took on a busy machine.
	elapsed := time.Since(first)
	require.True(t, retry <= 60 && float64(retry) >= (time.Minute-elapsed).Seconds(), "Retry-After %d, %s after the first attempt", retry, elapsed)
	require.Contains(t, body, "too many failed logins from this client address")
	status, _, _ = tryLogin(t, s, "127.0.0.2", "ci", "hunter2-hunter2")
	require.Equal(t, http.StatusTooManyRequests, status, "the right password too, from the blocked address")
	status, _, _ = tryLogin(t, s, "127.0.0.2", "dana", "database-password")
	require.Equal(t, http.StatusTooManyRequests, status, "any user, from the blocked address")

	status, _, body = tryLogin(t, s, "127.0.0.3", "ci", "hunter2-hunter2")
	require.Equal(t, http.StatusOK, status, "another address logs in: %s", body)
	t.Logf("blocked after 5 failures, Retry-After %d s; another address logged in %s later", retry, time.Since(start).Round(time.Millisecond))

	// 12 failures for dana from 3 addresses (4 each, under their limit of 5): dana is blocked
	// from everywhere, the others are not.
	for i := range 12 {
		from := fmt.Sprintf("127.0.0.%d", 4+i%3)
		status, _, body := tryLogin(t, s, from, "dana", fmt.Sprintf("guess-%d", i))
		require.Equal(t, http.StatusUnauthorized, status, "%s", body)
	}
	status, _, body = tryLogin(t, s, "127.0.0.9", "dana", "database-password")
	require.Equal(t, http.StatusTooManyRequests, status, "%s", body)
	require.Contains(t, body, "from this username")
	status, _, body = tryLogin(t, s, "127.0.0.9", "ci", "hunter2-hunter2")
	require.Equal(t, http.StatusOK, status, "%s", body)
}

// Rotation: a token signed with the old key works while both keys are configured (new first),
// and stops once the old key is removed.
func TestJWTKeyRotation(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	oldKey, newKey := strings.Repeat("o", 40), strings.Repeat("n", 40)

	before := startStack(t, dbURL, withEnv("DEVOPSTIC_JWT_SECRET", oldKey))
	oldToken := before.token
	before.stop()

	both := startStack(t, dbURL, withEnv("DEVOPSTIC_JWT_SECRET", newKey+","+oldKey))
	status, body := both.callRoute("GET", "/events", oldToken)
	require.Equal(t, http.StatusOK, status, "the old key's token while both are configured: %s", body)
	_, err := auth.NewTokens([]string{newKey}, time.Hour, 0).Verify(both.token)
	require.NoError(t, err, "new tokens are signed with the first key")
	newToken := both.token
	both.stop()

	after := startStack(t, dbURL, withEnv("DEVOPSTIC_JWT_SECRET", newKey))
	status, body = after.callRoute("GET", "/events", oldToken)
	require.Equal(t, http.StatusUnauthorized, status, "the old key removed: %s", body)
	status, _ = after.callRoute("GET", "/events", newToken)
	require.Equal(t, http.StatusOK, status)
}

// A revoked key stops working within seconds: measured from the revoke command's start and end
// to the ingest's first refusal.
func TestAPIKeyRevocationLatency(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	var fromStart, fromEnd []time.Duration
	for i := range 5 {
		key := s.newKey(fmt.Sprintf("ci-%d", i), "events:write")
		status, body := s.callRoute("POST", "/events", key)
		require.Equal(t, http.StatusAccepted, status, "%s", body)

		start := time.Now()
		s.mustCLI("", "apikey", "revoke", fmt.Sprintf("ci-%d", i))
		end := time.Now()
		for {
			status, _ := s.callRoute("POST", "/webhook/{cred}/events", key)
			if status == http.StatusUnauthorized {
				break
			}
			require.Equal(t, http.StatusAccepted, status)
			require.Less(t, time.Since(end), 30*time.Second, "the revoked key still works")
			time.Sleep(2 * time.Millisecond)
		}
		fromStart, fromEnd = append(fromStart, time.Since(start)), append(fromEnd, time.Since(end))
	}
	slices.Sort(fromEnd)
	t.Logf("revoked key refused %v after the revoke command began (%v after it returned; max %v)",
		fromStart, fromEnd, fromEnd[len(fromEnd)-1])
}

// The write path needs NATS only: with Postgres stopped, a valid API key (and a token) still
// posts events, even to an ingest started after Postgres went away; reads and database logins
// answer 503; the events land once Postgres is back.
func TestAPIKeyWhilePostgresIsDown(t *testing.T) {
	t.Parallel()
	cluster, dbURL := testenv.PrivatePostgres(t)
	s := startStack(t, dbURL)
	s.mustCLI("database-password\n", "user", "add", "dana", "--role", "admin")
	key := s.newKey("jenkins", "events:write")

	require.NoError(t, cluster.Stop())
	post := func(base, path, credential string, ts int) {
		t.Helper()
		body := fmt.Sprintf(`{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"c%d","timestamp":%d}`, ts, 1700000000+ts)
		status, _, out := httpCall(t, http.DefaultClient, base, "POST", path, credential, []byte(body))
		require.Equal(t, http.StatusAccepted, status, "%s", out)
	}
	post(s.base, "/events", key, 1)
	post(s.base, "/webhook/{cred}/events", key, 2)
	post(s.base, "/events", s.token, 3)
	status, _ := s.callRoute("GET", "/events", s.token)
	require.Equal(t, http.StatusServiceUnavailable, status, "reads need Postgres")
	status, _, _ = httpCall(t, http.DefaultClient, s.base, "POST", "/tokens", "", []byte(`{"username":"ci","password":"hunter2-hunter2"}`))
	require.Equal(t, http.StatusOK, status, "the configured login needs no database")
	status, _, _ = httpCall(t, http.DefaultClient, s.base, "POST", "/tokens", "", []byte(`{"username":"dana","password":"database-password"}`))
	require.Equal(t, http.StatusServiceUnavailable, status, "a database user's login needs the database")
	// Wrong guesses answer 503 while Postgres is down (they may be a database user's), and
	// still count: the 11th from an address is a 429, not a free guess.
	for i := range 10 {
		status, _, body := tryLogin(t, s, "127.0.0.7", "ci", fmt.Sprintf("guess-%d", i))
		require.Equal(t, http.StatusServiceUnavailable, status, "%s", body)
	}
	status, _, _ = tryLogin(t, s, "127.0.0.7", "ci", "guess-10")
	require.Equal(t, http.StatusTooManyRequests, status)

	// A second ingest, started while Postgres is down, knows the key from the bucket.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, s.cfg, ln, slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})))
	}()
	second := "http://" + ln.Addr().String()
	require.Eventually(t, func() bool {
		status, _, _ := httpCall(t, http.DefaultClient, second, "GET", "/readyz", "", nil)
		return status == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond)
	post(second, "/events", key, 4)
	cancel()
	require.NoError(t, <-done)

	require.NoError(t, cluster.StartAgain(context.Background()))
	s.waitCount(4, `SELECT count(*) FROM events`)
}

// lockedBuffer collects logs written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// No secret, password, token, key or signature appears in the logs (at debug level) of a run
// that logs in, refreshes, refuses, creates and revokes keys and receives webhooks.
func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	s := startStackLogging(t, "", &logs, withEnv("DEVOPSTIC_GITHUB_WEBHOOK_SECRET", githubSecret), withEnv("DEVOPSTIC_LOGIN_ATTEMPTS", "3"))
	secrets := map[string]string{"JWT key": stackSecret, "configured password": "hunter2-hunter2", "GitHub secret": githubSecret}
	addToken := func(name, token string) {
		secrets[name] = token
		secrets[name+" signature"] = token[strings.LastIndex(token, ".")+1:]
	}
	addToken("env token", s.token)

	s.mustCLI("db-user-password\n", "user", "add", "dana", "--role", "reader")
	secrets["database password"] = "db-user-password"
	addToken("database user's token", s.login("dana", "db-user-password"))
	s.mustCLI("db-user-password-2\n", "user", "passwd", "dana")
	secrets["changed password"] = "db-user-password-2"
	for i := range 4 { // the last is throttled
		guess := fmt.Sprintf("wrong-guess-%d", i)
		secrets["guess "+guess] = guess
		httpCall(t, http.DefaultClient, s.base, "POST", "/tokens", "", []byte(`{"username":"dana","password":"`+guess+`"}`))
	}
	status, body := s.callRoute("GET", "/refresh_token", s.token)
	require.Equal(t, http.StatusOK, status)
	var tok struct{ Token string }
	require.NoError(t, json.Unmarshal(body, &tok))
	addToken("refreshed token", tok.Token)

	key := s.newKey("jenkins", "events:write")
	secrets["API key"] = key
	s.callRoute("POST", "/events", key)
	s.callRoute("POST", "/webhook/{cred}/events", key)
	s.callRoute("POST", "/webhook/{cred}/events", s.token)
	s.callRoute("GET", "/events", key) // 403
	s.mustCLI("", "apikey", "revoke", "jenkins")
	require.Eventually(t, func() bool { status, _ := s.callRoute("POST", "/webhook/{cred}/events", key); return status == 401 }, 30*time.Second, 5*time.Millisecond)
	unknown, _, err := auth.NewAPIKey()
	require.NoError(t, err)
	secrets["unknown key"] = unknown
	s.callRoute("POST", "/webhook/{cred}/events", unknown)
	forged := forge(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 40)), claimsAt("ci", auth.RoleAdmin, time.Now(), time.Now().Add(time.Hour)))
	addToken("forged token", forged)
	s.callRoute("GET", "/events", forged)

	push := []byte(`{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000001","commits":[],"repository":{"full_name":"acme/api"}}`)
	sig := sign(push)
	secrets["GitHub signature"] = strings.TrimPrefix(sig, "sha256=")
	s.deliver("push", "d-1", push, "")
	badSig := "sha256=" + strings.Repeat("ab", 32)
	secrets["bad GitHub signature"] = strings.TrimPrefix(badSig, "sha256=")
	s.deliver("push", "d-2", push, "", "X-Hub-Signature-256", badSig)
	s.stop()

	out := logs.String()
	require.Contains(t, out, "path=/webhook/:token/events", "the requests were logged")
	require.Contains(t, out, "status=429")
	for name, secret := range secrets {
		require.NotContains(t, out, secret, "the logs hold the %s", name)
	}
	t.Logf("%d log lines, %d secrets, none found", strings.Count(out, "\n"), len(secrets))
}

// DEVOPSTIC_ADMIN_ADDR moves /readyz to an address of its own; every answer carries the
// security headers.
func TestAdminAddressAndSecurityHeaders(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	adminAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	s := startStack(t, "", withEnv("DEVOPSTIC_ADMIN_ADDR", adminAddr))

	status, _, _ := httpCall(t, http.DefaultClient, "http://"+adminAddr, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = httpCall(t, http.DefaultClient, "http://"+adminAddr, "GET", "/events", s.token, nil)
	require.Equal(t, http.StatusNotFound, status, "the admin address serves the probes only")
	status, _, _ = httpCall(t, http.DefaultClient, s.base, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusNotFound, status, "/readyz left the public address")
	status, h, _ := httpCall(t, http.DefaultClient, s.base, "GET", "/healthz", "", nil)
	require.Equal(t, http.StatusOK, status, "liveness stays public")
	for _, resp := range []http.Header{h, func() http.Header {
		_, h, _ := httpCall(t, http.DefaultClient, s.base, "GET", "/events", "", nil)
		return h
	}()} {
		require.Equal(t, "nosniff", resp.Get("X-Content-Type-Options"))
		require.Equal(t, "DENY", resp.Get("X-Frame-Options"))
		require.Equal(t, "no-referrer", resp.Get("Referrer-Policy"))
		require.Equal(t, "default-src 'none'; frame-ancestors 'none'", resp.Get("Content-Security-Policy"))
	}
	_, h, _ = httpCall(t, http.DefaultClient, s.base, "POST", "/tokens", "", []byte(`{"username":"ci","password":"hunter2-hunter2"}`))
	require.Equal(t, "no-store", h.Get("Cache-Control"), "tokens are not cached")
}

// The access commands refuse what they should and say why.
func TestAccessCommands(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	s.mustCLI("first-password\n", "user", "add", "ana@example.com", "--role", "admin")
	_, err := s.cli("first-password\n", "user", "add", "ana@example.com")
	require.ErrorContains(t, err, "already exists")
	_, err = s.cli("first-password\n", "user", "add", "ci")
	require.ErrorContains(t, err, "is the configured login")
	_, err = s.cli("short\n", "user", "add", "bob")
	require.ErrorContains(t, err, "at least 8 characters")
	_, err = s.cli("", "user", "add", "bob")
	require.ErrorContains(t, err, "no password on standard input")
	_, err = s.cli("first-password\n", "user", "add", "bob", "--role", "root")
	require.ErrorContains(t, err, "role must be admin or reader")
	_, err = s.cli("first-password\n", "user", "passwd", "nobody")
	require.ErrorContains(t, err, `no user "nobody"`)
	_, err = s.cli("", "user", "remove", "nobody")
	require.ErrorContains(t, err, `no user "nobody"`)
	out := s.mustCLI("", "user", "list")
	require.Contains(t, out, "ana@example.com  admin")
	require.Contains(t, out, "configured login ci")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM devopstic_auth.users`))
	require.Equal(t, 0, s.count(`SELECT count(*) FROM devopstic_auth.users WHERE password_hash LIKE '%first-password%'`))

	_, err = s.cli("", "apikey", "create", "--name", "jenkins", "--scope", "admin")
	require.ErrorContains(t, err, "scope must be")
	_, err = s.cli("", "apikey", "create", "--name", "jenkins")
	require.ErrorContains(t, err, "usage")
	first := s.newKey("jenkins", "events:write")
	second := s.newKey("jenkins", "events:write")
	require.Equal(t, 0, s.count(`SELECT count(*) FROM devopstic_auth.api_keys WHERE key_hash = $1 OR prefix = $2`, first, first))
	out = s.mustCLI("", "apikey", "list")
	require.Contains(t, out, first[:8]+"…")
	require.NotContains(t, out, first)
	_, err = s.cli("", "apikey", "revoke", "jenkins")
	require.ErrorContains(t, err, "2 active API keys are named")
	s.mustCLI("", "apikey", "revoke", "1")
	s.mustCLI("", "apikey", "revoke", "jenkins")
	_, err = s.cli("", "apikey", "revoke", "jenkins")
	require.ErrorContains(t, err, `no active API key named "jenkins"`)
	require.Eventually(t, func() bool { st, _ := s.callRoute("POST", "/events", second); return st == 401 }, 30*time.Second, 5*time.Millisecond)

	// sync rewrites the bucket from Postgres: an entry Postgres does not know goes.
	out = s.mustCLI("", "apikey", "sync")
	require.Contains(t, out, "wrote 2 API keys and 1 users")

	// The Grafana role cannot read this schema: it is outside public.
	require.Equal(t, 0, s.count(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('users', 'api_keys')`))
}
