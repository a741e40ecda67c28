package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/auth"
)

// However many wrong passwords arrive at once, at most the configured number of attempts is
// checked in a window: per client address, and per username from many addresses.
func TestLoginThrottleHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_LOGIN_ATTEMPTS", "5"), withEnv("DEVOPSTIC_LOGIN_USER_ATTEMPTS", "7"),
		withEnv("DEVOPSTIC_LOGIN_WINDOW", "1m"))
	s.mustCLI("database-password\n", "user", "add", "dana", "--role", "reader")

	attempt := func(n int, from func(i int) string, username string) map[int]int {
		statuses := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				status, _, _ := httpCall(t, clientFrom(from(i)), s.base, "POST", "/tokens", "",
					[]byte(fmt.Sprintf(`{"username":%q,"password":"guess-%d"}`, username, i)))
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		return statuses
	}
	got := attempt(30, func(int) string { return "127.0.0.2" }, "ci")
	require.Equal(t, map[int]int{http.StatusUnauthorized: 5, http.StatusTooManyRequests: 25}, got, "30 guesses at once from one address")

	got = attempt(30, func(i int) string { return fmt.Sprintf("127.0.1.%d", i+1) }, "dana")
	require.Equal(t, map[int]int{http.StatusUnauthorized: 7, http.StatusTooManyRequests: 23}, got, "30 guesses at once for one user from 30 addresses")
}

// A login's username is bounded and must be text before it becomes a throttle key or reaches
// the database: 400, naming it.
func TestLoginRefusesUnusableUsernames(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	for name, username := range map[string]string{
		"129 bytes": strings.Repeat("u", 129),
		"NUL":       "ana\x00",
		"newline":   "ana\nbob",
	} {
		login, err := json.Marshal(map[string]string{"username": username, "password": "whatever-it-is"})
		require.NoError(t, err)
		status, _, body := httpCall(t, http.DefaultClient, s.base, "POST", "/tokens", "", login)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", name, body)
		require.Contains(t, string(body), "username: ", name)
	}
	// Invalid UTF-8 in the JSON string is replaced by the decoder, so it is an unknown user.
	status, _, body := httpCall(t, http.DefaultClient, s.base, "POST", "/tokens", "", []byte("{\"username\":\"a\xff\",\"password\":\"whatever-it-is\"}"))
	require.Equal(t, http.StatusUnauthorized, status, "%s", body)
}

// caseVariants are every spelling of word in upper and lower case letters.
func caseVariants(word string) []string {
	variants := []string{""}
	for _, r := range word {
		var next []string
		for _, v := range variants {
			next = append(next, v+strings.ToLower(string(r)))
			if up := strings.ToUpper(string(r)); up != strings.ToLower(string(r)) {
				next = append(next, v+up)
			}
		}
		variants = next
	}
	return variants
}

// Routing and the logs' redaction agree on every spelling of the route that carries a
// credential in its path: only the documented one is routed, and no spelling logs the key.
func TestCredentialPathsAreRoutedAndRedactedAlike(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	s := startStackLogging(t, "", &logs)
	key := s.newKey("jenkins", "events:write")

	paths := map[string]bool{}
	for _, w := range caseVariants("webhook") {
		paths["/"+w+"/"+key+"/events"] = true
	}
	for _, e := range caseVariants("events") {
		paths["/webhook/"+key+"/"+e] = true
	}
	for path := range paths {
		status, _, body := httpCall(t, http.DefaultClient, s.base, "POST", path, "", []byte(deployEvent))
		want := http.StatusNotFound
		if path == "/webhook/"+key+"/events" {
			want = http.StatusAccepted
		}
		require.Equal(t, want, status, "%s: %s", strings.Replace(path, key, "KEY", 1), body)
	}
	s.stop()
	out := logs.String()
	require.Equal(t, len(paths), strings.Count(out, "msg=request method=POST")-strings.Count(out, "method=POST path=/tokens"),
		"every request was logged")
	require.Contains(t, out, "path=/webhook/:token/events")
	require.NotContains(t, out, key)
	require.NotContains(t, out, key[len(auth.APIKeyPrefix):len(auth.APIKeyPrefix)+8], "not even a part of the key")
}

// Query parameters that Postgres cannot take as text (NUL, invalid UTF-8) are a 400 naming the
// parameter, not a 500.
func TestQueryParametersMustBeText(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	cases := []struct{ path, param string }{
		{"/events", "pipeline_id"},
		{"/events", "environment"},
		{"/commits", "pipeline_id"},
		{"/api/v1/metrics/dora", "pipeline_id"},
		{"/api/v1/metrics/dora", "environment"},
		{"/api/v1/pipelines", "environment"},
	}
	for _, c := range cases {
		for name, value := range map[string]string{"NUL": "api%00x", "invalid UTF-8": "api%FF%FE"} {
			status, _, body := httpCall(t, http.DefaultClient, s.base, "GET", c.path+"?"+c.param+"="+value, s.token, nil)
			require.Equal(t, http.StatusBadRequest, status, "%s with %s in %s: %s", c.path, name, c.param, body)
			require.Contains(t, string(body), fmt.Sprintf(`query parameter \"%s\"`, c.param))
		}
	}
	status, _, body := httpCall(t, http.DefaultClient, s.base, "GET", "/events?pipeline_id="+url.QueryEscape("api-é"), s.token, nil)
	require.Equal(t, http.StatusOK, status, "UTF-8 text is fine: %s", body)
}

// X-Request-ID is echoed only when it is a short printable token; anything else is replaced.
func TestRequestIDIsBoundedAndClean(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	requestID := func(id string) string {
		t.Helper()
		req, err := http.NewRequest("GET", s.base+"/healthz", nil)
		require.NoError(t, err)
		req.Header.Set("X-Request-ID", id)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.Header.Get("X-Request-ID")
	}
	require.Equal(t, "ci-run-42.7:abc", requestID("ci-run-42.7:abc"), "a client's id is kept")
	for name, id := range map[string]string{
		"3,000 characters": strings.Repeat("r", 3000),
		"a space":          "two words",
		"a tab":            "tab\there",
		"non-ASCII":        "idé",
	} {
		got := requestID(id)
		require.NotEqual(t, id, got, name)
		require.Regexp(t, `^[0-9a-f-]{36}$`, got, "%s: a fresh id instead", name)
	}
}

// A 413 answered before any handler runs carries the same security headers as any answer.
func TestEveryAnswerCarriesTheSecurityHeaders(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_BODY_LIMIT", "2048"))
	_, normal, _ := httpCall(t, http.DefaultClient, s.base, "GET", "/events", s.token, nil)
	status, tooLarge, body := httpCall(t, http.DefaultClient, s.base, "POST", "/events", s.token, []byte(strings.Repeat(" ", 4096)))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", body)
	status, notFound, _ := httpCall(t, http.DefaultClient, s.base, "GET", "/nowhere", "", nil)
	require.Equal(t, http.StatusNotFound, status)
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Referrer-Policy",
		"Cross-Origin-Resource-Policy", "X-Permitted-Cross-Domain-Policies"} {
		require.NotEmpty(t, normal.Get(h), h)
		require.Equal(t, normal.Get(h), tooLarge.Get(h), "413: %s", h)
		require.Equal(t, normal.Get(h), notFound.Get(h), "404: %s", h)
	}
}
