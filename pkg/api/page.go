package api

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/overview"
	"github.com/devopstic/devopstic/pkg/store"
)

// The first page (GET /) and its login. A browser logs in with the form (POST /login) and gets
// the same token POST /tokens gives, in a session cookie: HttpOnly (no script reads it),
// SameSite=Lax (no other site's form or fetch sends it), Secure and __Host- prefixed behind TLS.
// It is verified exactly as a bearer token is (revocations included), and GET / takes a bearer
// token or API key too. The page and the read API's GET routes accept the cookie; nothing that
// changes data does (POST /events takes a bearer credential only).
//
// Login and logout change state, so both refuse cross-site requests twice over: Go's
// http.CrossOriginProtection (Sec-Fetch-Site, else Origin against Host) and a double-submitted
// token (a random value in an HttpOnly, SameSite=Strict cookie that the form must repeat).

const (
	sessionCookie = "devopstic_session"
	csrfCookie    = "devopstic_csrf"
	// hostPrefix binds a cookie to this host and path / with Secure: set only behind TLS.
	hostPrefix = "__Host-"
	csrfTTL    = 12 * time.Hour
)

var (
	errCrossOrigin = errors.New("cross-origin request refused")
	errBadCSRF     = errors.New("the form expired or came from elsewhere: reload the page and try again")
	crossOrigin    = http.NewCrossOriginProtection()
)

// cookieName is name as this request's cookies carry it: __Host- prefixed behind TLS.
func cookieName(c *fiber.Ctx, name string) string {
	if c.Protocol() == "https" {
		return hostPrefix + name
	}
	return name
}

func (s *server) setCookie(c *fiber.Ctx, name, value string, expires time.Time, sameSite string) {
	ck := &fiber.Cookie{
		Name:     cookieName(c, name),
		Value:    value,
		Path:     "/",
		HTTPOnly: true,
		Secure:   c.Protocol() == "https",
		SameSite: sameSite,
	}
	if value == "" {
		ck.Expires, ck.MaxAge = time.Unix(0, 0), -1
	} else {
		ck.Expires = expires
		ck.MaxAge = max(1, int(expires.Sub(s.deps.Now()).Seconds()))
	}
	c.Cookie(ck)
}

// authorizePage admits a request with a bearer credential (as authorize) or a session cookie;
// without either it sends the browser to the login form.
func (s *server) authorizePage(c *fiber.Ctx) error {
	if c.Get(fiber.HeaderAuthorization) != "" {
		return s.authorize(auth.ScopeRead)(c)
	}
	token := c.Cookies(cookieName(c, sessionCookie))
	if token == "" {
		return c.Redirect("/login", fiber.StatusSeeOther)
	}
	p, err := s.verify(token)
	if err == nil {
		err = p.Allow(auth.ScopeRead)
	}
	if err != nil {
		// Expired, revoked or forged: forget it and log in again.
		s.setCookie(c, sessionCookie, "", time.Time{}, fiber.CookieSameSiteLaxMode)
		return c.Redirect("/login", fiber.StatusSeeOther)
	}
	c.Locals(principalKey, p)
	c.Locals(sessionKey, true)
	return c.Next()
}

// authorizeRead is authorize(ScopeRead) for the read API's GET routes, which a browser with a
// session may follow from the page: a bearer credential, else the session cookie.
func (s *server) authorizeRead(c *fiber.Ctx) error {
	token := c.Cookies(cookieName(c, sessionCookie))
	if c.Get(fiber.HeaderAuthorization) != "" || token == "" {
		return s.authorize(auth.ScopeRead)(c)
	}
	return s.admit(c, token, auth.ScopeRead)
}

const sessionKey localKey = 1

// getPage serves the first page.
func (s *server) getPage(c *fiber.Ctx) error {
	env := strings.TrimSpace(c.Query("environment"))
	if env == "" {
		env = dora.DefaultEnvironment
	}
	page := 1
	if v := c.Query("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s.pageError(c, fiber.StatusBadRequest, fmt.Sprintf("page must be a whole number from 1, not %q", v))
		}
		page = n
	}
	view, err := overview.Build(c.UserContext(), s.deps.Store, overview.Request{
		Environment: env, Page: page, Now: s.deps.Now(), GrafanaURL: s.cfg.GrafanaURL,
	})
	if err != nil {
		status, message := fiber.StatusInternalServerError, "The page could not be computed; the logs say why."
		if store.IsTransient(err) {
			status, message = fiber.StatusServiceUnavailable, "The database is unavailable; retry in a moment (events are still accepted)."
		}
		s.deps.Log.Warn("first page", "error", err)
		return s.pageError(c, status, message)
	}
	p := overview.Page{View: view}
	if session, _ := c.Locals(sessionKey).(bool); session {
		p.User = principal(c).Subject
		if p.CSRF, err = s.csrfToken(c); err != nil {
			return fail(c, err)
		}
	}
	return s.html(c, fiber.StatusOK, func(b *bytes.Buffer) error { return overview.RenderPage(b, p) })
}

// getLogin serves the login form.
func (s *server) getLogin(c *fiber.Ctx) error {
	token, err := s.csrfToken(c)
	if err != nil {
		return fail(c, err)
	}
	return s.html(c, fiber.StatusOK, func(b *bytes.Buffer) error { return overview.RenderLogin(b, overview.Login{CSRF: token}) })
}

// postLogin checks the form as POST /tokens checks its body (the same throttle, the same
// logins) and answers the token in the session cookie.
func (s *server) postLogin(c *fiber.Ctx) error {
	if err := s.checkForm(c); err != nil {
		return s.loginAgain(c, fiber.StatusForbidden, "", err.Error())
	}
	username, password := c.FormValue("username"), c.FormValue("password")
	if err := auth.CheckUsername(username); err != nil || username == "" {
		return s.loginAgain(c, fiber.StatusBadRequest, "", "Enter a username and a password.")
	}
	ip := c.IP()
	if err := s.limiter.Reserve(ip, username); err != nil {
		return s.loginAgain(c, fiber.StatusTooManyRequests, username, "Too many failed logins: "+err.Error())
	}
	role, err := s.login(c.UserContext(), username, password)
	switch {
	case errors.Is(err, auth.ErrUnauthorized):
		return s.loginAgain(c, fiber.StatusUnauthorized, username, "Wrong username or password.")
	case store.IsTransient(err):
		return s.loginAgain(c, fiber.StatusServiceUnavailable, username, "The database is unavailable; retry in a moment.")
	case err != nil:
		return fail(c, err)
	}
	s.limiter.Succeeded(ip, username)
	token, exp, err := s.deps.Tokens.Issue(username, role)
	if err != nil {
		return fail(c, err)
	}
	s.setCookie(c, sessionCookie, token, exp, fiber.CookieSameSiteLaxMode)
	s.setCookie(c, csrfCookie, "", time.Time{}, fiber.CookieSameSiteStrictMode) // a new one for the session's forms
	return c.Redirect("/", fiber.StatusSeeOther)
}

// postLogout forgets the session cookie. The token it held stays valid until it expires, as a
// token from POST /tokens does: `devopstic user passwd` or `remove` revokes a user's tokens.
func (s *server) postLogout(c *fiber.Ctx) error {
	if err := s.checkForm(c); err != nil {
		return s.pageError(c, fiber.StatusForbidden, err.Error())
	}
	s.setCookie(c, sessionCookie, "", time.Time{}, fiber.CookieSameSiteLaxMode)
	s.setCookie(c, csrfCookie, "", time.Time{}, fiber.CookieSameSiteStrictMode)
	return c.Redirect("/login", fiber.StatusSeeOther)
}

// csrfToken is this browser's form token: the one its cookie holds, or a new one set in it.
func (s *server) csrfToken(c *fiber.Ctx) (string, error) {
	if t := c.Cookies(cookieName(c, csrfCookie)); len(t) == 43 {
		return t, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("form token: %w", err)
	}
	t := base64.RawURLEncoding.EncodeToString(b)
	s.setCookie(c, csrfCookie, t, s.deps.Now().Add(csrfTTL), fiber.CookieSameSiteStrictMode)
	return t, nil
}

// checkForm refuses a form posted from another site: by the browser's own word (Sec-Fetch-Site,
// Origin) and by the token the form must repeat from its cookie.
func (s *server) checkForm(c *fiber.Ctx) error {
	req := &http.Request{Method: c.Method(), Host: string(c.Request().Host()), Header: http.Header{}}
	for _, h := range []string{"Sec-Fetch-Site", "Origin"} {
		if v := c.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	if err := crossOrigin.Check(req); err != nil {
		return fmt.Errorf("%w: %w", errCrossOrigin, err)
	}
	cookie, form := c.Cookies(cookieName(c, csrfCookie)), c.FormValue("csrf")
	if cookie == "" || subtle.ConstantTimeCompare([]byte(cookie), []byte(form)) != 1 {
		return errBadCSRF
	}
	return nil
}

func (s *server) loginAgain(c *fiber.Ctx, status int, username, message string) error {
	token, err := s.csrfToken(c)
	if err != nil {
		return fail(c, err)
	}
	return s.html(c, status, func(b *bytes.Buffer) error {
		return overview.RenderLogin(b, overview.Login{CSRF: token, Username: username, Error: message})
	})
}

func (s *server) pageError(c *fiber.Ctx, status int, message string) error {
	return s.html(c, status, func(b *bytes.Buffer) error { return overview.RenderError(b, message) })
}

// html answers a rendered page: rendered whole first, so that a template error is a 500 and
// never half a page; never cached; its own stylesheet the only thing it may use.
func (s *server) html(c *fiber.Ctx, status int, render func(*bytes.Buffer) error) error {
	var b bytes.Buffer
	if err := render(&b); err != nil {
		return fail(c, fmt.Errorf("render page: %w", err))
	}
	c.Set(fiber.HeaderContentSecurityPolicy, overview.ContentSecurityPolicy)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Status(status).Send(b.Bytes())
}
