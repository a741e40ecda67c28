package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/devopstic/devopstic/pkg/cdevents"
	"github.com/devopstic/devopstic/pkg/stream"
)

// cdeventsAccepted is POST /cdevents's answer: the events published, and those of types
// DevOpstic does not use, which were not.
type cdeventsAccepted struct {
	acceptedBody
	Ignored []ignoredEvent `json:"ignored,omitempty"`
}

type ignoredEvent struct {
	Index  int    `json:"index"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// postCDEvents takes CDEvents as CloudEvents over HTTP, in structured, batched or binary mode,
// authenticated like POST /events. A request is validated whole: one event that cannot be mapped
// refuses all (400 naming it). Events of types DevOpstic does not use are answered as ignored and
// not published, so that a broker sending every event keeps its deliveries green.
func (s *server) postCDEvents(c *fiber.Ctx) error {
	header := func(name string) string { return c.Get(name) }
	envs, err := cdevents.Read(c.Get(fiber.HeaderContentType), header, c.Body(), s.cfg.MaxBatch)
	switch {
	case errors.Is(err, cdevents.ErrMedia):
		return fail(c, fmt.Errorf("%w: %w", errUnsupportedMedia, err))
	case errors.Is(err, cdevents.ErrInvalid):
		return unused(c, err, false)
	case err != nil:
		return fail(c, err)
	}
	var opts cdevents.Options
	opts.PipelineID, opts.Environment = urlOptions(c)
	msgs, answer, err := s.cdeventMessages(envs, opts)
	if err != nil {
		return unused(c, err, false)
	}
	if len(envs) == 1 && len(msgs) == 0 {
		return unused(c, errors.New(answer.Ignored[0].Reason), true)
	}
	if len(msgs) > 0 {
		if err := s.publish(c.UserContext(), cdevents.Source, msgs); err != nil {
			return fail(c, err)
		}
	}
	return c.Status(fiber.StatusAccepted).JSON(answer)
}

// cdeventMessages maps each event to decide whether it is of use, and returns the stream
// messages of those that are: the raw event with its binary-mode attributes and the options it
// was mapped with, so the writer maps it again exactly so.
func (s *server) cdeventMessages(envs []cdevents.Envelope, opts cdevents.Options) ([]stream.Message, cdeventsAccepted, error) {
	optsJSON, err := json.Marshal(opts)
	if err != nil {
		return nil, cdeventsAccepted{}, err
	}
	received := s.deps.Now().UTC()
	answer := cdeventsAccepted{acceptedBody: acceptedBody{IDs: []string{}}}
	var msgs []stream.Message
	for i, e := range envs {
		d, err := cdevents.Parse(e, opts)
		if errors.Is(err, cdevents.ErrIgnored) {
			answer.Ignored = append(answer.Ignored, ignoredEvent{Index: i, ID: e.ID, Reason: err.Error()})
			continue
		}
		if err != nil {
			return nil, cdeventsAccepted{}, err
		}
		header := nats.Header{cdevents.HeaderOptions: {string(optsJSON)}}
		for name, value := range e.Headers() {
			header.Set(name, value)
		}
		msgs = append(msgs, stream.Message{
			Subject: stream.Subject(cdevents.Source, d.Set.Event.Kind),
			ID:      e.MessageID(),
			// Cloned: the body is fasthttp's buffer, reused once the handler returns.
			Data:       bytes.Clone(e.Raw),
			ReceivedAt: received,
			Header:     header,
		})
		answer.IDs = append(answer.IDs, e.MessageID())
	}
	answer.Accepted = len(msgs)
	return msgs, answer, nil
}
