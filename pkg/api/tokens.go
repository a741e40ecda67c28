package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/auth"
)

var (
	errNoToken  = fmt.Errorf("%w: no bearer token", auth.ErrUnauthorized)
	errBadLogin = fmt.Errorf("%w: bad login", auth.ErrUnauthorized)
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

// postTokens exchanges the configured login for a token (the original API's answer shape).
func (s *server) postTokens(c *fiber.Ctx) error {
	var login loginBody
	if err := json.Unmarshal(c.Body(), &login); err != nil {
		return fail(c, fmt.Errorf(`%w: send {"username": "...", "password": "..."}`, errBadRequest))
	}
	if err := s.deps.Login.Check(login.Username, login.Password); err != nil {
		return fail(c, errBadLogin)
	}
	return s.issue(c, login.Username)
}

func (s *server) refreshToken(c *fiber.Ctx) error {
	return s.issue(c, c.Locals(subjectKey).(string))
}

func (s *server) issue(c *fiber.Ctx, subject string) error {
	token, exp, err := s.deps.Tokens.Issue(subject)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(tokenBody{Code: fiber.StatusOK, Expire: exp.Format(time.RFC3339), Token: token})
}

type localKey int

const subjectKey localKey = 0

// requireToken lets a request through only with a valid bearer token.
func (s *server) requireToken(c *fiber.Ctx) error {
	header := c.Get(fiber.HeaderAuthorization)
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return fail(c, errNoToken)
	}
	claims, err := s.deps.Tokens.Verify(strings.TrimSpace(token))
	if err != nil {
		return fail(c, err)
	}
	c.Locals(subjectKey, claims.Subject)
	return c.Next()
}
