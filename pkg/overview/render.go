package overview

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

//go:embed web/page.html web/style.css
var files embed.FS

// style is the page's only stylesheet, inlined: the page loads nothing.
var style = mustRead("web/style.css")

// ContentSecurityPolicy is the policy every page is served with: nothing but its own inline
// stylesheet (by hash) and forms posted to itself; no script, frame, image or font from
// anywhere.
var ContentSecurityPolicy = "default-src 'none'; style-src '" + styleHash() + "'; form-action 'self'; " +
	"base-uri 'none'; frame-ancestors 'none'"

func styleHash() string {
	sum := sha256.Sum256([]byte(style))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func mustRead(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// rowData is what the row template gets: the row and the page around it.
type rowData struct {
	Row  Row
	View View
}

var templates = template.Must(template.New("overview").Funcs(template.FuncMap{
	// The stylesheet is ours, from the binary: CSS, not text to escape.
	"style":       func() template.CSS { return template.CSS(style) }, //nolint:gosec // our own file
	"row":         func(r Row, v View) rowData { return rowData{Row: r, View: v} },
	"rfc3339":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"duration":    Duration,
	"join":        strings.Join,
	"trendWindow": func() int { return TrendWindow },
	"inc":         func(n int) int { return n + 1 },
	"dec":         func(n int) int { return n - 1 },
	"pageQuery": func(v View, page int) string {
		return url.Values{"environment": {v.Environment}, "page": {strconv.Itoa(page)}}.Encode()
	},
}).ParseFS(files, "web/page.html"))

// Page is what the page template shows: the view, and for a session's page the logout form's
// token and the user's name (CSRF is empty for a request made with a bearer token, which has no
// session to end).
type Page struct {
	View View
	CSRF string
	User string
}

// Login is what the login form shows.
type Login struct {
	CSRF     string
	Username string
	Error    string
}

// RenderPage writes the page.
func RenderPage(w io.Writer, p Page) error { return templates.ExecuteTemplate(w, "page", p) }

// RenderLogin writes the login form.
func RenderLogin(w io.Writer, l Login) error { return templates.ExecuteTemplate(w, "login", l) }

// RenderError writes a page that says what went wrong, in words fit for the user.
func RenderError(w io.Writer, message string) error {
	return templates.ExecuteTemplate(w, "error", message)
}
