package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/devopstic/devopstic/pkg/scenario"
)

// Names a page must escape: markup, both quotes, an ampersand.
const (
	scriptTeam     = `<script>alert("team")</script> & 'co'`
	scriptPipeline = `<script>alert('pipeline')</script>"`
)

// noRedirects is a browser without its redirects followed: each answer is seen as it is.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// page requests path with the cookies and headers given (name, value pairs), no token.
func (s *stack) page(method, path string, form url.Values, cookies []*http.Cookie, headers ...string) (*http.Response, string) {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.base+path, body)
	require.NoError(s.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := noRedirects.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp, string(out)
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// requireDeleted checks that c tells the browser to forget the cookie.
func requireDeleted(t *testing.T, c *http.Cookie) {
	t.Helper()
	require.NotNil(t, c)
	require.Empty(t, c.Value)
	require.True(t, c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())), "%v", c)
}

// attr is n's attribute name, and whether it has one.
func attr(n *html.Node, name string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val, true
		}
	}
	return "", false
}

// pageFigure is one <data> of the page: which row, which window (0 for both), which figure.
type pageFigure struct {
	kind, name string
	window     int
	path       string
	value      string
}

// parsePage reads the windows and every figure of the page.
func parsePage(t *testing.T, body string) (windows map[int][2]string, figures []pageFigure) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	require.NoError(t, err)
	windows = map[int][2]string{}
	var kind, name string
	var window int
	var visit func(n *html.Node)
	visit = func(n *html.Node) {
		savedKind, savedName, savedWindow := kind, name, window
		if n.Type == html.ElementNode {
			if d, ok := attr(n, "data-window-days"); ok {
				days, err := strconv.Atoi(d)
				require.NoError(t, err)
				from, _ := attr(n, "data-from")
				to, _ := attr(n, "data-to")
				windows[days] = [2]string{from, to}
			}
			if k, ok := attr(n, "data-kind"); ok {
				kind = k
				name, _ = attr(n, "data-name")
			}
			if w, ok := attr(n, "data-window"); ok {
				window, err = strconv.Atoi(w)
				require.NoError(t, err)
			}
			if path, ok := attr(n, "data-figure"); ok && n.Data == "data" {
				value, ok := attr(n, "value")
				require.True(t, ok, "%s has no value", path)
				figures = append(figures, pageFigure{kind: kind, name: name, window: window, path: path, value: value})
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
		kind, name, window = savedKind, savedName, savedWindow
	}
	visit(doc)
	return windows, figures
}

// The page's every number is the metrics API's for the same row and window; names are escaped.
func TestPageShowsTheAPIsFigures(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	today := time.Now().UTC().Truncate(24 * time.Hour)
	at := func(d time.Duration) string { return strconv.FormatInt(today.Add(d).Unix(), 10) }
	open := []string{
		`{"type":"commit","pipeline_id":` + strconv.Quote(scriptPipeline) + `,"commit_id":"x1","timestamp":` + at(-50*time.Hour) + `}`,
		`{"type":"deploy","pipeline_id":` + strconv.Quote(scriptPipeline) + `,"environment":"production","commit_id":"x1","timestamp":` + at(-30*time.Hour) + `}`,
		`{"type":"incident_status_change","pipeline_id":` + strconv.Quote(scriptPipeline) + `,"environment":"production","incident_id":"<b>still-open</b>","status":"failure","commit_id":"x1","timestamp":` + at(-20*time.Hour) + `}`,
	}
	s.loadGenerated(scenario.Generate(scenario.Config{Seed: 5, Pipelines: 3, Start: today.AddDate(0, 0, -100), Days: 100}), open...)
	for _, args := range [][]string{
		{"create", "platform"}, {"add", "platform", "service-01"}, {"add", "platform", "service-02"},
		{"create", scriptTeam}, {"add", scriptTeam, scriptPipeline}, {"create", "nobody yet"},
	} {
		_, err := s.teamCmd(args...)
		require.NoError(t, err, "team %v", args)
	}

	status, raw := s.do("GET", "/", "", nil)
	require.Equal(t, http.StatusOK, status, "%s", raw)
	body := string(raw)

	t.Run("names are escaped", func(t *testing.T) {
		require.NotContains(t, body, "<script")
		require.NotContains(t, body, "<b>still-open")
		require.Contains(t, body, "&lt;script&gt;alert(&#34;team&#34;)&lt;/script&gt; &amp; &#39;co&#39;")
		require.Contains(t, body, "&lt;b&gt;still-open&lt;/b&gt;")
		// In attributes too, and in the links' query strings.
		require.Contains(t, body, `data-name="&lt;script&gt;alert(&#39;pipeline&#39;)&lt;/script&gt;&#34;"`)
		require.Contains(t, body, "team="+strings.ReplaceAll(url.QueryEscape(scriptTeam), "+", "%20"))
	})

	windows, figures := parsePage(t, body)
	require.Len(t, windows, 2)
	rows := map[string]bool{}
	for _, f := range figures {
		rows[f.kind+"/"+f.name] = true
	}
	require.Equal(t, map[string]bool{
		"organisation/All pipelines": true, "team/platform": true, "team/" + scriptTeam: true, "team/nobody yet": true,
		"pipeline/service-01": true, "pipeline/service-02": true, "pipeline/service-03": true, "pipeline/" + scriptPipeline: true,
	}, rows)

	apiAnswers := map[string]map[string]any{}
	api := func(kind, name string, window int) map[string]any {
		key := fmt.Sprint(kind, "/", name, "/", window)
		if m, ok := apiAnswers[key]; ok {
			return m
		}
		q := url.Values{"from": {windows[window][0]}, "to": {windows[window][1]}}
		switch kind {
		case "team":
			q.Set("team", name)
		case "pipeline":
			q.Set("pipeline_id", name)
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?"+q.Encode())), &m))
		apiAnswers[key] = m
		return m
	}
	perRow := map[string]int{}
	for _, f := range figures {
		windowsOf := []int{f.window}
		if f.window == 0 { // open incidents: now, whatever the window
			windowsOf = []int{30, 90}
		}
		for _, w := range windowsOf {
			parts := strings.Split(f.path, ".")
			want := api(f.kind, f.name, w)[parts[0]].(map[string]any)[parts[1]]
			switch v := want.(type) {
			case nil:
				require.Empty(t, f.value, "%s %s, %d days: %s", f.kind, f.name, w, f.path)
			case string:
				require.Equal(t, v, f.value, "%s %s, %d days: %s", f.kind, f.name, w, f.path)
			case float64:
				got, err := strconv.ParseFloat(f.value, 64)
				require.NoError(t, err, "%s %s, %d days: %s = %q", f.kind, f.name, w, f.path, f.value)
				require.Equal(t, v, got, "%s %s, %d days: %s", f.kind, f.name, w, f.path)
			default:
				t.Fatalf("%s: unexpected %T", f.path, want)
			}
		}
		perRow[f.kind+"/"+f.name]++
	}
	for row, n := range perRow {
		// 5 keys × 2 windows: 3+3+3+2+2 figures each, and the open incidents.
		require.Equal(t, 2*(4+3+4+3+2)+1, n, "%s shows every figure", row)
	}
	org := api("organisation", "", 90)["failed_deployment_recovery_time"].(map[string]any)
	require.Equal(t, 1.0, org["open_incidents"])
	require.Contains(t, body, `data-open-incidents="1"`)
	require.Contains(t, body, "<svg class=\"trend\"")
	require.Contains(t, body, "<polyline points=")

	// The tiers are the API's default benchmark's, named with a link to its report; the keys
	// have DORA's current names, grouped as DORA groups them.
	require.Equal(t, "DORA 2024", api("organisation", "", 90)["tier_source"])
	require.Contains(t, body, `Tiers: <a href="https://dora.dev/research/2024/dora-report/" data-tier-source="DORA 2024">DORA 2024</a>.`)
	section := body[strings.Index(body, `<section class="row" data-kind="organisation"`):]
	section = section[:strings.Index(section, "</section>")]
	var order []string
	for _, name := range []string{">Throughput<", ">Deployment frequency<", ">Lead time for changes<", ">Failed deployment recovery time<",
		">Instability<", ">Change failure rate<", ">Rework rate<"} {
		at := strings.Index(section, name)
		require.GreaterOrEqual(t, at, 0, "the organisation's table has %s", name)
		order = append(order, fmt.Sprintf("%06d %s", at, name))
	}
	require.True(t, slices.IsSorted(order), "throughput, then instability: %v", order)
	require.NotContains(t, body, "Time to restore")
}

// The page is behind the login: a browser without a session goes to the form; the form's
// session cookie is HttpOnly, SameSite and (behind TLS) Secure; forms from elsewhere are refused.
func TestPageLogin(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", withEnv("DEVOPSTIC_PROXY_HEADER", "X-Real-IP"), withEnv("DEVOPSTIC_TRUSTED_PROXIES", "127.0.0.1"))

	resp, _ := s.page("GET", "/", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/login", resp.Header.Get("Location"))

	status, body := s.do("GET", "/", "", nil, "Authorization", "Bearer not-a-token")
	require.Equal(t, http.StatusUnauthorized, status, "%s", body)

	resp, _ = s.page("GET", "/", nil, []*http.Cookie{{Name: "devopstic_session", Value: "forged"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "a bad session is forgotten")
	requireDeleted(t, cookieNamed(resp, "devopstic_session"))

	resp, form := s.page("GET", "/login", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	csrf := cookieNamed(resp, "devopstic_csrf")
	require.NotNil(t, csrf)
	require.True(t, csrf.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, csrf.SameSite)
	require.Contains(t, form, `name="csrf" value="`+csrf.Value+`"`)

	login := func(password, token string, cookies []*http.Cookie, headers ...string) *http.Response {
		resp, _ := s.page("POST", "/login", url.Values{"username": {"ci"}, "password": {password}, "csrf": {token}}, cookies, headers...)
		return resp
	}
	jar := []*http.Cookie{csrf}
	require.Equal(t, http.StatusForbidden, login("hunter2-hunter2", "", jar).StatusCode, "no form token")
	require.Equal(t, http.StatusForbidden, login("hunter2-hunter2", csrf.Value, nil).StatusCode, "no cookie to match")
	require.Equal(t, http.StatusForbidden, login("hunter2-hunter2", csrf.Value, jar, "Sec-Fetch-Site", "cross-site").StatusCode)
	require.Equal(t, http.StatusForbidden, login("hunter2-hunter2", csrf.Value, jar, "Origin", "https://evil.example").StatusCode)
	require.Equal(t, http.StatusUnauthorized, login("wrong", csrf.Value, jar).StatusCode)

	resp = login("hunter2-hunter2", csrf.Value, jar, "Sec-Fetch-Site", "same-origin", "Origin", s.base)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/", resp.Header.Get("Location"))
	session := cookieNamed(resp, "devopstic_session")
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, session.SameSite)
	require.False(t, session.Secure, "plain HTTP: a Secure cookie would never come back")
	require.Positive(t, session.MaxAge)

	resp, page := s.page("GET", "/", nil, []*http.Cookie{session})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", page)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Contains(t, page, `action="/logout"`)
	require.Contains(t, page, "Log out ci")
	// The JSON the page links to takes the session too, but never a write.
	resp, _ = s.page("GET", "/api/v1/teams", nil, []*http.Cookie{session})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = s.page("POST", "/events", nil, []*http.Cookie{session})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// Log out: the form's token is needed, and the cookie is gone afterwards.
	resp, _ = s.page("GET", "/", nil, []*http.Cookie{session})
	token := csrf.Value
	if c := cookieNamed(resp, "devopstic_csrf"); c != nil {
		token = c.Value
	}
	both := []*http.Cookie{session, {Name: "devopstic_csrf", Value: token}}
	resp, _ = s.page("POST", "/logout", url.Values{"csrf": {"guess"}}, both)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = s.page("POST", "/logout", url.Values{"csrf": {token}}, both, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = s.page("POST", "/logout", url.Values{"csrf": {token}}, both)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/login", resp.Header.Get("Location"))
	requireDeleted(t, cookieNamed(resp, "devopstic_session"))

	t.Run("behind TLS the cookies are Secure and __Host-", func(t *testing.T) {
		tls := []string{"X-Forwarded-Proto", "https"}
		resp, _ := s.page("GET", "/login", nil, nil, tls...)
		csrf := cookieNamed(resp, "__Host-devopstic_csrf")
		require.NotNil(t, csrf)
		require.True(t, csrf.Secure)
		resp, _ = s.page("POST", "/login", url.Values{"username": {"ci"}, "password": {"hunter2-hunter2"}, "csrf": {csrf.Value}},
			[]*http.Cookie{csrf}, tls...)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		session := cookieNamed(resp, "__Host-devopstic_session")
		require.NotNil(t, session)
		require.True(t, session.Secure)
		require.True(t, session.HttpOnly)
		require.Equal(t, "/", session.Path)
		resp, _ = s.page("GET", "/", nil, []*http.Cookie{session}, tls...)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		resp, _ = s.page("GET", "/", nil, []*http.Cookie{{Name: "devopstic_session", Value: session.Value}}, tls...)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "behind TLS only the __Host- cookie counts")
	})
}
