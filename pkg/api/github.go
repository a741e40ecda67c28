package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/stream"
)

// postGitHub verifies a GitHub delivery on its raw bytes, maps it to decide whether it is of
// use, and publishes it as received.
func (s *server) postGitHub(c *fiber.Ctx) error {
	if len(s.cfg.GitHubSecrets) == 0 {
		s.deps.Log.Warn("a GitHub delivery was refused: DEVOPSTIC_GITHUB_WEBHOOK_SECRET is not set")
		return c.Status(fiber.StatusNotFound).JSON(errorBody{Error: "GitHub webhooks are not enabled on this server"})
	}
	body := c.Body()
	if err := github.Verify(s.cfg.GitHubSecrets, body, c.Get("X-Hub-Signature-256"), c.Get("X-Hub-Signature")); err != nil {
		return c.Status(fiber.StatusUnauthorized).JSON(errorBody{Error: err.Error()})
	}
	if err := checkHeaders(c, github.HeaderEvent, github.HeaderDelivery); err != nil {
		return fail(c, err)
	}
	name := c.Get(github.HeaderEvent)
	if name == "ping" {
		var ping struct {
			HookID int64 `json:"hook_id"`
		}
		_ = json.Unmarshal(body, &ping) // a ping without hook_id is still a ping
		return c.JSON(fiber.Map{"ping": "pong", "hook_id": ping.HookID})
	}
	opts := s.cfg.GitHub
	opts.PipelineID, opts.Environment = c.Query("pipeline_id"), c.Query("environment")
	delivery, err := github.Parse(name, body, opts)
	switch {
	case errors.Is(err, github.ErrIgnored):
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"ignored": err.Error()})
	case err != nil:
		return c.Status(fiber.StatusBadRequest).JSON(errorBody{Error: err.Error()})
	}
	for _, w := range delivery.Warnings {
		s.deps.Log.Warn("GitHub delivery partly unreadable", "event", name, "delivery", c.Get(github.HeaderDelivery), "problem", w)
	}
	optsJSON, err := json.Marshal(opts)
	if err != nil {
		return fail(c, err)
	}
	id := "github:" + deliveryID(c.Get(github.HeaderDelivery), body)
	msg := stream.Message{
		Subject:    stream.Subject(github.Source, name),
		ID:         id,
		Data:       bytes.Clone(body),
		ReceivedAt: s.deps.Now().UTC(),
		Header: nats.Header{
			github.HeaderEvent:    {name},
			github.HeaderDelivery: {c.Get(github.HeaderDelivery)},
			github.HeaderOptions:  {string(optsJSON)},
		},
	}
	if err := s.publish(c.UserContext(), github.Source, []stream.Message{msg}); err != nil {
		return fail(c, err)
	}
	return c.Status(fiber.StatusAccepted).JSON(acceptedBody{Accepted: 1, IDs: []string{id}})
}

// deliveryID is GitHub's delivery id, or for senders that omit it a hash of the body, so that
// a redelivery is recognised either way.
func deliveryID(header string, body []byte) string {
	if header != "" && len(header) <= 128 {
		return header
	}
	sum := sha256.Sum256(body)
	return fmt.Sprintf("sha256-%s", hex.EncodeToString(sum[:16]))
}
