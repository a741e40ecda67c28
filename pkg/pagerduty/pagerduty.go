// Package pagerduty verifies PagerDuty V3 webhook deliveries and maps incidents to facts.
//
// Verify checks X-PagerDuty-Signature on the raw bytes before anything is parsed. Parse is a
// pure function of the body and of Options, which the ingest stamps into the stream message's
// headers, so the writer and every replay map a delivery exactly as the ingest judged it.
// Times come from the payload (event.occurred_at), never from the clock.
package pagerduty

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook"
)

// Source names PagerDuty in the tables and on the stream.
const Source = "pagerduty"

// Headers of a delivery.
const (
	HeaderSignature = "X-PagerDuty-Signature"
	// HeaderWebhookID names the webhook subscription that sent the delivery.
	HeaderWebhookID = "X-Webhook-Id"
	// HeaderOptions carries the Options in force when the delivery came in (JSON).
	HeaderOptions = "Devopstic-Pagerduty-Options"
)

// ErrIgnored and ErrInvalid are webhook's: a delivery DevOpstic does not use (answered 202 so
// PagerDuty keeps sending), and a delivery of a kind DevOpstic uses that lacks what it needs.
var ErrIgnored, ErrInvalid = webhook.ErrIgnored, webhook.ErrInvalid

// ErrSignature: the signature is missing, malformed or matches no secret.
var ErrSignature = errors.New("bad signature")

// Verify checks the X-PagerDuty-Signature header: one or more comma-separated v1=<hex
// HMAC-SHA256 of the body>, any of which may match any secret (PagerDuty lists several while a
// secret rotates). Comparisons are constant time. No secret, no signature: refused.
func Verify(secrets []string, body []byte, header string) error {
	if strings.TrimSpace(header) == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, HeaderSignature)
	}
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		hexSig, ok := strings.CutPrefix(strings.TrimSpace(part), "v1=")
		if !ok {
			continue // a future scheme: fail closed unless a v1 signature matches
		}
		if sig, err := hex.DecodeString(hexSig); err == nil && len(sig) == sha256.Size {
			sigs = append(sigs, sig)
		}
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: %s holds no v1=<hex> signature", ErrSignature, HeaderSignature)
	}
	if !webhook.MatchHMAC(sha256.New, secrets, body, sigs...) {
		return fmt.Errorf("%w: it matches no configured secret", ErrSignature)
	}
	return nil
}

// Options are what the webhook's URL said when the delivery came in.
type Options struct {
	// PipelineID and Environment override the service name and production
	// (?pipeline_id=, ?environment=).
	PipelineID, Environment string
}

// Decode maps a delivery again from its stream message, with the Options the ingest mapped it
// with.
func Decode(h webhook.Header, body []byte) (fact.Set, error) {
	return webhook.Decode(h, HeaderOptions, func(opts Options) (fact.Set, error) {
		d, err := Parse(body, opts)
		return d.Set, err
	})
}

// Delivery is a mapped delivery.
type Delivery struct {
	Set fact.Set
	// EventID is PagerDuty's id of the event (event.id), the same on every retry.
	EventID string
}

// Parse maps a V3 webhook body to facts. The returned Set's Event has Source, Kind,
// PipelineID, Environment and OccurredAt filled; the caller adds the id, receive time and
// stream sequence.
func Parse(body []byte, opts Options) (Delivery, error) {
	var p payload
	if err := webhook.Unmarshal(body, opts.PipelineID, opts.Environment, &p); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	e := p.Event
	if e == nil {
		return Delivery{}, fmt.Errorf("%w: event is missing (only V3 webhooks are understood)", ErrInvalid)
	}
	switch e.EventType {
	case "incident.triggered", "incident.resolved":
	case "":
		return Delivery{}, fmt.Errorf("%w: event.event_type is missing", ErrInvalid)
	default:
		return Delivery{}, fmt.Errorf("%w: DevOpstic does not use %s events", ErrIgnored, e.EventType)
	}
	d := e.Data
	if d == nil || d.ID == "" {
		return Delivery{}, fmt.Errorf("%w: event.data.id is missing", ErrInvalid)
	}
	m := webhook.Mapper{Source: Source, URLPipeline: opts.PipelineID, URLEnvironment: opts.Environment, NamedBy: "event.data.service.summary"}
	if d.Service != nil {
		m.Named = d.Service.Summary
	}
	if err := m.RequirePipeline(); err != nil {
		return Delivery{}, err
	}
	at, err := webhook.When("event.occurred_at", e.OccurredAt)
	if err != nil {
		return Delivery{}, err
	}
	pipeline, env := m.Pipeline(), m.Environment("")
	inc := fact.Incident{Source: Source, IncidentID: d.ID.String(), PipelineID: pipeline, Environment: env}
	status := fact.StatusFailure
	if e.EventType == "incident.triggered" {
		inc.OpenedAt = &at
	} else {
		inc.ResolvedAt = &at
		status = fact.StatusSuccess
		// Newer payloads say when the incident was created: the resolution alone then gives
		// the whole incident, even when its trigger was never delivered.
		if created, err := event.ParseTime(d.CreatedAt.String()); err == nil {
			inc.OpenedAt = &created
		}
	}
	return Delivery{
		EventID: e.ID.String(),
		Set: fact.Set{
			Event: fact.Event{
				Source: Source, Kind: Kind(e.EventType), PipelineID: pipeline, Environment: env,
				IncidentID: d.ID.String(), Status: status, OccurredAt: at, Payload: body,
			},
			Incidents: []fact.Incident{inc},
		},
	}, nil
}

// Kind is the stream subject's last token for an event type: incident.triggered is
// incident_triggered.
func Kind(eventType string) string {
	return strings.ReplaceAll(eventType, ".", "_")
}

type payload struct {
	Event *struct {
		ID         webhook.ID   `json:"id"`
		EventType  string       `json:"event_type"`
		OccurredAt webhook.Time `json:"occurred_at"`
		Data       *struct {
			ID        webhook.ID   `json:"id"`
			CreatedAt webhook.Time `json:"created_at"`
			Service   *struct {
				Summary string `json:"summary"`
			} `json:"service"`
		} `json:"data"`
	} `json:"event"`
}
