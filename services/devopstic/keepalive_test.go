package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/auth"
)

// keepAlive is one HTTP/1.1 connection that every request goes over, in order: the server
// then parses each request into the buffer the previous one used (fasthttp reuses it), which
// is where a string kept from an earlier request would change under its holder.
type keepAlive struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int // requests sent
}

func dialKeepAlive(t testing.TB, base string) *keepAlive {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &keepAlive{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// do sends one request with headers (name, value pairs) and returns the answer's status and
// body; the connection stays open. Each request starts with another number of padding headers,
// so that a header lands in another of the server's reused header slots than in the request
// before, and what an earlier request left in a slot is overwritten by another header.
func (k *keepAlive) do(method, path, body string, headers ...string) (int, string) {
	k.t.Helper()
	var req strings.Builder
	k.n++
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: devopstic\r\nContent-Length: %d\r\n", method, path, len(body))
	for i := range k.n % 3 {
		fmt.Fprintf(&req, "X-Pad-%d: %s\r\n", i, strings.Repeat("p", 8+i))
	}
	if body != "" {
		req.WriteString("Content-Type: application/json\r\n")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&req, "%s: %s\r\n", headers[i], headers[i+1])
	}
	req.WriteString("\r\n" + body)
	require.NoError(k.t, k.conn.SetDeadline(time.Now().Add(30*time.Second)))
	_, err := io.WriteString(k.conn, req.String())
	require.NoError(k.t, err)
	resp, err := http.ReadResponse(k.r, nil)
	require.NoError(k.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(k.t, err)
	require.False(k.t, resp.Close, "the server keeps the connection open")
	return resp.StatusCode, string(out)
}

// A credential verified on a keep-alive connection lends nothing to the next request on it:
// a string of the same length (the bytes that replace it in the reused buffer), and tokens
// signed with guessable keys, are refused on the header and on the path routes.
func TestKeepAliveRequestsDoNotInheritAVerifiedCredential(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	key := s.newKey("ci-key", "events:write,metrics:read")
	now := time.Now()
	forged := map[string]string{
		"signed with the empty key": forge(t, jwt.SigningMethodHS256, []byte(""), claimsAt("ci", auth.RoleAdmin, now, now.Add(time.Hour))),
		`signed with "secret"`:      forge(t, jwt.SigningMethodHS256, []byte("secret"), claimsAt("ci", auth.RoleAdmin, now, now.Add(time.Hour))),
	}

	for name, good := range map[string]string{"token": s.token, "API key": key} {
		impostors := map[string]string{
			"Z × len": strings.Repeat("Z", len(good)),
			"Q × len": strings.Repeat("Q", len(good)),
			// Same length, same prefix (an API key's marker), one byte changed at the end.
			"last byte changed": good[:len(good)-1] + otherByte(good[len(good)-1]),
		}
		for what, f := range forged {
			impostors[what] = f
		}
		routes := []struct{ method, path, body string }{
			{"GET", "/api/v1/pipelines", ""},
			{"GET", "/api/v1/metrics/dora", ""},
			{"POST", "/events", deployEvent},
			{"POST", "/webhook/{cred}/events", deployEvent},
		}
		for _, r := range routes {
			conn := dialKeepAlive(t, s.base)
			call := func(credential string) (int, string) {
				if strings.Contains(r.path, "{cred}") {
					return conn.do(r.method, strings.Replace(r.path, "{cred}", credential, 1), r.body)
				}
				return conn.do(r.method, r.path, r.body, "Authorization", "Bearer "+credential)
			}
			for what, impostor := range impostors {
				status, body := call(good)
				require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, status, "%s on %s %s: %s", name, r.method, r.path, body)
				status, body = call(impostor)
				require.Equal(t, http.StatusUnauthorized, status,
					"%s %s after a good %s on the same connection, with %s: %s", r.method, r.path, name, what, body)
			}
		}
	}
	// Every accepted POST was the one deploy event, deduplicated: nothing refused got in.
	require.Equal(t, uint64(1), s.streamMessages())
}

// The login throttle's keys are the client's address (from DEVOPSTIC_PROXY_HEADER behind a
// trusted proxy) and the username: requests on one keep-alive connection, from addresses and
// for usernames of the same length, are each counted under their own key.
func TestLoginThrottleKeysSurviveKeepAlive(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_LOGIN_ATTEMPTS", "2"), withEnv("DEVOPSTIC_LOGIN_USER_ATTEMPTS", "3"),
		withEnv("DEVOPSTIC_LOGIN_WINDOW", "1m"),
		withEnv("DEVOPSTIC_PROXY_HEADER", "X-Real-IP"), withEnv("DEVOPSTIC_TRUSTED_PROXIES", "127.0.0.1"))
	conn := dialKeepAlive(t, s.base)
	login := func(ip, username, password string) int {
		status, _ := conn.do("POST", "/tokens", fmt.Sprintf(`{"username":%q,"password":%q}`, username, password), "X-Real-IP", ip)
		return status
	}

	// Each address fails twice, with a good login from another address of the same length
	// between: it is blocked after its second failure, and the others are not.
	for i := range 6 {
		bad := fmt.Sprintf("10.0.0.%d", i)
		require.Equal(t, http.StatusUnauthorized, login(bad, "ci", "guess-1"))
		require.Equal(t, http.StatusOK, login(fmt.Sprintf("10.0.1.%d", i), "ci", "hunter2-hunter2"))
		require.Equal(t, http.StatusUnauthorized, login(bad, "ci", "guess-2"))
		require.Equal(t, http.StatusTooManyRequests, login(bad, "ci", "hunter2-hunter2"), "%s failed twice", bad)
		require.Equal(t, http.StatusOK, login(fmt.Sprintf("10.0.2.%d", i), "ci", "hunter2-hunter2"), "an address of the same length")
	}

	// Three failures for "xy" from three addresses, each followed by a login as "ci": xy is
	// blocked, ci is not.
	for i := range 3 {
		require.Equal(t, http.StatusUnauthorized, login(fmt.Sprintf("10.0.3.%d", i), "xy", "wrong-password"))
		require.Equal(t, http.StatusOK, login(fmt.Sprintf("10.0.4.%d", i), "ci", "hunter2-hunter2"))
	}
	require.Equal(t, http.StatusTooManyRequests, login("10.0.5.1", "xy", "wrong-password"), "the username that failed 3 times")
	require.Equal(t, http.StatusUnauthorized, login("10.0.5.2", "ab", "wrong-password"), "a username of the same length")
}

// otherByte is a letter that is not b.
func otherByte(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}
