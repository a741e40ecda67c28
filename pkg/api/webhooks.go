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

	"github.com/devopstic/devopstic/pkg/alertmanager"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/gitlab"
	"github.com/devopstic/devopstic/pkg/pagerduty"
	"github.com/devopstic/devopstic/pkg/stream"
)

// The webhook handlers share one shape: refuse when the source is not configured (404, and the
// log names the variable), verify the raw bytes (401), map the delivery to decide whether it is
// of use (202 ignored, or 400 naming the field), then publish the raw body with the headers the
// writer needs to map it again (202 once acked). The writer maps it with the source's Decode.

// webhookOff answers a delivery to a source that has no secret configured.
func (s *server) webhookOff(c *fiber.Ctx, source, variable string) error {
	s.deps.Log.Warn("a "+source+" delivery was refused: "+variable+" is not set", "path", c.Path())
	return c.Status(fiber.StatusNotFound).JSON(errorBody{Error: source + " webhooks are not enabled on this server"})
}

// unauthorized answers a delivery whose signature or token does not verify.
func unauthorized(c *fiber.Ctx, err error) error {
	return c.Status(fiber.StatusUnauthorized).JSON(errorBody{Error: err.Error()})
}

// unused answers a delivery that will not be published: one of a kind DevOpstic does not use
// (202, so the sender shows it green and does not retry), or one it cannot map (400).
func unused(c *fiber.Ctx, err error, ignored bool) error {
	if ignored {
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"ignored": err.Error()})
	}
	return c.Status(fiber.StatusBadRequest).JSON(errorBody{Error: err.Error()})
}

// publishWebhook publishes a mapped delivery's raw body on devopstic.events.<source>.<kind>,
// with its headers and the options it was mapped with (as JSON under optionsHeader).
func (s *server) publishWebhook(c *fiber.Ctx, source, kind, id string, header nats.Header, optionsHeader string, opts any) error {
	optsJSON, err := json.Marshal(opts)
	if err != nil {
		return fail(c, err)
	}
	header.Set(optionsHeader, string(optsJSON))
	msg := stream.Message{
		Subject:    stream.Subject(source, kind),
		ID:         id,
		Data:       bytes.Clone(c.Body()),
		ReceivedAt: s.deps.Now().UTC(),
		Header:     header,
	}
	if err := s.publish(c.UserContext(), source, []stream.Message{msg}); err != nil {
		return fail(c, err)
	}
	return c.Status(fiber.StatusAccepted).JSON(acceptedBody{Accepted: 1, IDs: []string{id}})
}

// checkHeaders refuses a delivery whose headers named would not survive the trip: they travel
// on the stream message into events.headers (jsonb), a delivery id into events.id (text), so
// each must be text Postgres keeps, without control characters. A 400, not a dead letter.
func checkHeaders(c *fiber.Ctx, names ...string) error {
	for _, name := range names {
		if err := event.CheckHeader(c.Get(name)); err != nil {
			return fmt.Errorf("%w: header %s: %w", errBadRequest, name, err)
		}
	}
	return nil
}

// urlOptions are the webhook URL's ?pipeline_id= and ?environment=.
func urlOptions(c *fiber.Ctx) (pipelineID, environment string) {
	return c.Query("pipeline_id"), c.Query("environment")
}

// deliveryID is the sender's id of a delivery, or for senders that omit it a hash of the body,
// so that a redelivery is recognised either way.
func deliveryID(header string, body []byte) string {
	if header != "" && len(header) <= 128 {
		return header
	}
	sum := sha256.Sum256(body)
	return fmt.Sprintf("sha256-%s", hex.EncodeToString(sum[:16]))
}

// postGitHub takes GitHub webhooks (X-Hub-Signature-256, or the legacy X-Hub-Signature).
func (s *server) postGitHub(c *fiber.Ctx) error {
	if len(s.cfg.GitHubSecrets) == 0 {
		return s.webhookOff(c, "GitHub", "DEVOPSTIC_GITHUB_WEBHOOK_SECRET")
	}
	body := c.Body()
	if err := github.Verify(s.cfg.GitHubSecrets, body, c.Get("X-Hub-Signature-256"), c.Get("X-Hub-Signature")); err != nil {
		return unauthorized(c, err)
	}
	if err := checkHeaders(c, github.HeaderEvent, github.HeaderDelivery); err != nil {
		return fail(c, err)
	}
	name, delivery := c.Get(github.HeaderEvent), c.Get(github.HeaderDelivery)
	if name == "ping" {
		var ping struct {
			HookID int64 `json:"hook_id"`
		}
		_ = json.Unmarshal(body, &ping) // a ping without hook_id is still a ping
		return c.JSON(fiber.Map{"ping": "pong", "hook_id": ping.HookID})
	}
	opts := s.cfg.GitHub
	opts.PipelineID, opts.Environment = urlOptions(c)
	d, err := github.Parse(name, body, opts)
	if err != nil {
		return unused(c, err, errors.Is(err, github.ErrIgnored))
	}
	for _, w := range d.Warnings {
		s.deps.Log.Warn("GitHub delivery partly unreadable", "event", name, "delivery", delivery, "problem", w)
	}
	header := nats.Header{github.HeaderEvent: {name}, github.HeaderDelivery: {delivery}}
	return s.publishWebhook(c, github.Source, d.Set.Event.Kind, "github:"+deliveryID(delivery, body), header, github.HeaderOptions, opts)
}

// postGitLab takes GitLab webhooks (X-Gitlab-Token).
func (s *server) postGitLab(c *fiber.Ctx) error {
	if len(s.cfg.GitLabSecrets) == 0 {
		return s.webhookOff(c, "GitLab", "DEVOPSTIC_GITLAB_WEBHOOK_SECRET")
	}
	if err := gitlab.Verify(s.cfg.GitLabSecrets, c.Get(gitlab.HeaderToken)); err != nil {
		return unauthorized(c, err)
	}
	if err := checkHeaders(c, gitlab.HeaderEvent, gitlab.HeaderUUID, gitlab.HeaderIdempotencyKey); err != nil {
		return fail(c, err)
	}
	name, body := c.Get(gitlab.HeaderEvent), c.Body()
	opts := s.cfg.GitLab
	opts.PipelineID, opts.Environment = urlOptions(c)
	d, err := gitlab.Parse(name, body, opts)
	if err != nil {
		return unused(c, err, errors.Is(err, gitlab.ErrIgnored))
	}
	uuid := c.Get(gitlab.HeaderUUID)
	if uuid == "" {
		uuid = c.Get(gitlab.HeaderIdempotencyKey)
	}
	for _, w := range d.Warnings {
		s.deps.Log.Warn("GitLab delivery partly unreadable", "event", name, "uuid", uuid, "problem", w)
	}
	header := nats.Header{gitlab.HeaderEvent: {name}, gitlab.HeaderUUID: {uuid}}
	return s.publishWebhook(c, gitlab.Source, d.Set.Event.Kind, "gitlab:"+deliveryID(uuid, body), header, gitlab.HeaderOptions, opts)
}

// postPagerDuty takes PagerDuty V3 webhooks (X-PagerDuty-Signature).
func (s *server) postPagerDuty(c *fiber.Ctx) error {
	if len(s.cfg.PagerDutySecrets) == 0 {
		return s.webhookOff(c, "PagerDuty", "DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET")
	}
	body := c.Body()
	if err := pagerduty.Verify(s.cfg.PagerDutySecrets, body, c.Get(pagerduty.HeaderSignature)); err != nil {
		return unauthorized(c, err)
	}
	if err := checkHeaders(c, pagerduty.HeaderWebhookID); err != nil {
		return fail(c, err)
	}
	var opts pagerduty.Options
	opts.PipelineID, opts.Environment = urlOptions(c)
	d, err := pagerduty.Parse(body, opts)
	if err != nil {
		return unused(c, err, errors.Is(err, pagerduty.ErrIgnored))
	}
	header := nats.Header{pagerduty.HeaderWebhookID: {c.Get(pagerduty.HeaderWebhookID)}}
	return s.publishWebhook(c, pagerduty.Source, d.Set.Event.Kind, "pagerduty:"+deliveryID(d.EventID, body), header, pagerduty.HeaderOptions, opts)
}

// postAlertmanager takes Alertmanager notifications (bearer token, or basic auth).
func (s *server) postAlertmanager(c *fiber.Ctx) error {
	if len(s.cfg.AlertmanagerTokens) == 0 {
		return s.webhookOff(c, "Alertmanager", "DEVOPSTIC_ALERTMANAGER_TOKEN")
	}
	if err := alertmanager.Verify(s.cfg.AlertmanagerTokens, c.Get(fiber.HeaderAuthorization)); err != nil {
		return unauthorized(c, err)
	}
	body := c.Body()
	opts := s.cfg.Alertmanager
	opts.PipelineID, opts.Environment = urlOptions(c)
	d, err := alertmanager.Parse(body, opts)
	if err != nil {
		return unused(c, err, errors.Is(err, alertmanager.ErrIgnored))
	}
	for _, w := range d.Warnings {
		s.deps.Log.Warn("Alertmanager notification partly unusable", "problem", w)
	}
	// Alertmanager sends no delivery id: the body's hash stands for one, so a notification
	// repeated unchanged is counted once.
	return s.publishWebhook(c, alertmanager.Source, d.Set.Event.Kind, "alertmanager:"+deliveryID("", body), nats.Header{}, alertmanager.HeaderOptions, opts)
}
