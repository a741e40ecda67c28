package api

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

// errorBody is every error answer: what went wrong and, for invalid input, each bad field.
type errorBody struct {
	Error   string          `json:"error"`
	Details []event.Problem `json:"details,omitempty"`
}

// Errors of the HTTP layer itself.
var (
	errUnsupportedMedia = errors.New("unsupported content type")
	errBadParameter     = errors.New("invalid parameter")
	errBadRequest       = errors.New("bad request")
)

// retryAfterSeconds is what a client is told to wait when the stream or the database is away.
const retryAfterSeconds = "2"

// fail maps an error to its status and answers it. It is the only place that does.
func fail(c *fiber.Ctx, err error) error {
	var verr *event.ValidationError
	switch {
	case errors.As(err, &verr):
		return c.Status(fiber.StatusBadRequest).JSON(errorBody{Error: "invalid event", Details: verr.Problems})
	case errors.Is(err, event.ErrMalformed), errors.Is(err, errBadParameter), errors.Is(err, errBadRequest),
		errors.Is(err, dora.ErrBadParameter):
		return c.Status(fiber.StatusBadRequest).JSON(errorBody{Error: err.Error()})
	case errors.Is(err, event.ErrTooMany), errors.Is(err, stream.ErrTooLarge):
		// Not a 503: a message larger than the stream takes will never fit, however often sent.
		return c.Status(fiber.StatusRequestEntityTooLarge).JSON(errorBody{Error: err.Error()})
	case errors.Is(err, store.ErrNotFound):
		return c.Status(fiber.StatusNotFound).JSON(errorBody{Error: err.Error()})
	case errors.Is(err, errUnsupportedMedia):
		return c.Status(fiber.StatusUnsupportedMediaType).JSON(errorBody{Error: err.Error()})
	case errors.Is(err, auth.ErrUnauthorized):
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="devopstic"`)
		return c.Status(fiber.StatusUnauthorized).JSON(errorBody{Error: "unauthorized: " + publicReason(err)})
	case errors.Is(err, auth.ErrForbidden):
		return c.Status(fiber.StatusForbidden).JSON(errorBody{Error: err.Error()})
	case errors.Is(err, auth.ErrRateLimited):
		var lim *auth.LimitError
		if errors.As(err, &lim) {
			c.Set(fiber.HeaderRetryAfter, strconv.Itoa(lim.Seconds()))
		}
		return c.Status(fiber.StatusTooManyRequests).JSON(errorBody{Error: err.Error()})
	case errors.Is(err, auth.ErrNotLoaded):
		c.Set(fiber.HeaderRetryAfter, retryAfterSeconds)
		return c.Status(fiber.StatusServiceUnavailable).JSON(errorBody{Error: err.Error()})
	case errors.Is(err, stream.ErrUnavailable):
		c.Set(fiber.HeaderRetryAfter, retryAfterSeconds)
		return c.Status(fiber.StatusServiceUnavailable).JSON(errorBody{Error: "the event stream is unavailable; nothing was accepted, retry the request"})
	case store.IsTransient(err):
		c.Set(fiber.HeaderRetryAfter, retryAfterSeconds)
		slog.Default().Warn("database unavailable", "route", c.Route().Path, "error", err)
		return c.Status(fiber.StatusServiceUnavailable).JSON(errorBody{Error: "the database is unavailable; retry later (events are still accepted)"})
	default:
		slog.Default().Error("internal error", "route", c.Route().Path, "error", err)
		return c.Status(fiber.StatusInternalServerError).JSON(errorBody{Error: "internal error"})
	}
}

// publicReason says why a credential was refused without echoing the credential.
func publicReason(err error) string {
	switch {
	case errors.Is(err, errNoToken):
		return "send Authorization: Bearer <token or API key> (get a token from POST /tokens)"
	case errors.Is(err, errBadLogin):
		return "wrong username or password"
	}
	for _, known := range []error{auth.ErrExpired, auth.ErrRefreshWindow, auth.ErrRevokedToken, auth.ErrUnknownKey, auth.ErrRevokedKey} {
		if errors.Is(err, known) {
			return strings.TrimPrefix(known.Error(), auth.ErrUnauthorized.Error()+": ")
		}
	}
	return "invalid or expired token"
}
