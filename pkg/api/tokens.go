package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/store"
)

var (
	errNoToken   = fmt.Errorf("%w: no bearer token", auth.ErrUnauthorized)
	errBadLogin  = fmt.Errorf("%w: bad login", auth.ErrUnauthorized)
	errNotAToken = fmt.Errorf("%w: GET /refresh_token refreshes tokens; an API key lives until it is revoked", auth.ErrForbidden)
)

type tokenBody struct {
	Code   int    `json:"code"`
	Expire string `json:"expire"`
	Token  string `json:"token"`
}

type loginBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// postTokens exchanges a login for a token (the original API's answer shape). Logins are
// throttled per client address and per username; a throttled attempt is refused before its
// password is looked at.
func (s *server) postTokens(c *fiber.Ctx) error {
	var login loginBody
	if err := json.Unmarshal(c.Body(), &login); err != nil {
		return fail(c, fmt.Errorf(`%w: send {"username": "...", "password": "..."}`, errBadRequest))
	}
	if err := auth.CheckUsername(login.Username); err != nil {
		return fail(c, fmt.Errorf("%w: username: %w", errBadRequest, err))
	}
	// The attempt counts as failed until the password is found right: every failure counts,
	// not only a wrong password (while Postgres is down a wrong guess of the configured
	// password answers 503, and must not be a free guess).
	ip := c.IP()
	if err := s.limiter.Reserve(ip, login.Username); err != nil {
		return fail(c, err)
	}
	role, err := s.login(c.UserContext(), login.Username, login.Password)
	if err != nil {
		if errors.Is(err, auth.ErrUnauthorized) {
			return fail(c, errBadLogin)
		}
		return fail(c, err)
	}
	s.limiter.Succeeded(ip, login.Username)
	token, exp, err := s.deps.Tokens.Issue(login.Username, role)
	return s.answerToken(c, token, exp, err)
}

// login checks the configured account, then the database's users. A username that is neither
// costs the same bcrypt time as a wrong password, so timing does not tell which names exist.
func (s *server) login(ctx context.Context, username, password string) (auth.Role, error) {
	if s.deps.Login.Check(username, password) == nil {
		return auth.RoleAdmin, nil
	}
	if s.deps.Store == nil {
		return "", auth.CheckNoUser(password)
	}
	u, err := s.deps.Store.User(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		return "", auth.CheckNoUser(password)
	}
	if err != nil {
		return "", err
	}
	if err := auth.CheckPassword(u.PasswordHash, password); err != nil {
		return "", err
	}
	return auth.ParseRole(u.Role)
}

// refreshToken gives a fresh token for the same login, within the login's refresh window.
func (s *server) refreshToken(c *fiber.Ctx) error {
	p := principal(c)
	if p.APIKey {
		return fail(c, errNotAToken)
	}
	token, exp, err := s.deps.Tokens.Refresh(p.Claims)
	return s.answerToken(c, token, exp, err)
}

func (s *server) answerToken(c *fiber.Ctx, token string, exp time.Time, err error) error {
	if err != nil {
		return fail(c, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(tokenBody{Code: fiber.StatusOK, Expire: exp.Format(time.RFC3339), Token: token})
}

type localKey int

const principalKey localKey = 0

func principal(c *fiber.Ctx) auth.Principal {
	p, _ := c.Locals(principalKey).(auth.Principal)
	return p
}

// authorize lets a request through only with a valid bearer token or API key that has scope
// (any scope when ""): 401 without a good credential, 403 with one that may not do this.
func (s *server) authorize(scope auth.Scope) fiber.Handler {
	return func(c *fiber.Ctx) error {
		scheme, credential, ok := strings.Cut(c.Get(fiber.HeaderAuthorization), " ")
		credential = strings.TrimSpace(credential)
		if !ok || !strings.EqualFold(scheme, "Bearer") || credential == "" {
			return fail(c, errNoToken)
		}
		return s.admit(c, credential, scope)
	}
}

// authorizePath is authorize for POST /webhook/:token/events, the original API's path for
// tools that cannot set headers: the token or API key is the path's second segment.
func (s *server) authorizePath(scope auth.Scope) fiber.Handler {
	return func(c *fiber.Ctx) error {
		return s.admit(c, c.Params("token"), scope)
	}
}

func (s *server) admit(c *fiber.Ctx, credential string, scope auth.Scope) error {
	p, err := s.verify(credential)
	if err != nil {
		return fail(c, err)
	}
	if scope != "" {
		if err := p.Allow(scope); err != nil {
			return fail(c, err)
		}
	}
	c.Locals(principalKey, p)
	return c.Next()
}

// verify checks a credential against the in-memory keyring and the token keys: no database.
func (s *server) verify(credential string) (auth.Principal, error) {
	if auth.IsAPIKey(credential) {
		if s.deps.Keyring == nil {
			return auth.Principal{}, auth.ErrNotLoaded
		}
		return s.deps.Keyring.APIKey(credential)
	}
	claims, err := s.deps.Tokens.Verify(credential)
	if err != nil {
		return auth.Principal{}, err
	}
	if s.deps.Keyring != nil {
		if err := s.deps.Keyring.CheckToken(claims); err != nil {
			return auth.Principal{}, err
		}
	}
	return auth.Principal{Subject: claims.Subject, Scopes: claims.Role.Scopes(), Claims: claims}, nil
}
