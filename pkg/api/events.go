package api

import (
	"fmt"
	"mime"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/stream"
)

type acceptedBody struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
}

// postEvents validates a whole request, publishes every event and answers 202 only once the
// stream has acknowledged all of them.
func (s *server) postEvents(c *fiber.Ctx) error {
	ndjson, err := isNDJSON(c.Get(fiber.HeaderContentType))
	if err != nil {
		return fail(c, err)
	}
	raws, batch, err := event.Split(c.Body(), ndjson, s.cfg.MaxBatch)
	if err != nil {
		return fail(c, err)
	}
	received := s.deps.Now().UTC()
	events, err := event.DecodeAll(raws, batch, received)
	if err != nil {
		return fail(c, err)
	}
	msgs := make([]stream.Message, len(events))
	ids := make([]string, len(events))
	for i, e := range events {
		msgs[i] = stream.Message{
			Subject:    stream.Subject(event.Source, e.Type),
			ID:         e.ID,
			Data:       raws[i],
			ReceivedAt: received,
		}
		ids[i] = e.ID
	}
	if err := s.publish(c.UserContext(), event.Source, msgs); err != nil {
		return fail(c, err)
	}
	return c.Status(fiber.StatusAccepted).JSON(acceptedBody{Accepted: len(events), IDs: ids})
}

// isNDJSON reads the content type: JSON (also when none is given) or NDJSON. Anything else,
// curl's default form type included, is refused with 415.
func isNDJSON(contentType string) (bool, error) {
	if contentType == "" {
		return false, nil
	}
	media, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, fmt.Errorf("%w: %q", errUnsupportedMedia, contentType)
	}
	switch media {
	case "application/json", "text/json":
		return false, nil
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines":
		return true, nil
	default:
		return false, fmt.Errorf("%w: %q; send application/json (one event or an array) or application/x-ndjson", errUnsupportedMedia, media)
	}
}
