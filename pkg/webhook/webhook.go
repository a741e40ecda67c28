// Package webhook holds what the webhook sources (github, gitlab, pagerduty, alertmanager)
// share, so that a fix to it lands in every source at once: comparing a signature or token
// with the configured secrets in constant time, reading a delivery's body, resolving its
// pipeline and environment, mapping pushes, merges, deployments and incidents to facts (an
// incident's cause included), mapping a delivery again from its stream message, and reading
// ids and times as tolerantly as the tools that imitate a source need (ID, Time, When): an id
// may be a number or a string, a time any of the near variants of RFC 3339 or epoch seconds.
//
// Each source keeps what is its own: its signature scheme, its payload and which of its kinds
// count. Everything here is, like the parsers it serves, a pure function of its arguments.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
)

// Errors of a delivery. The sources return them as their own (github.ErrIgnored is ErrIgnored).
var (
	// ErrIgnored: a delivery DevOpstic does not use (answered 202 so the sender shows it green).
	ErrIgnored = errors.New("ignored")
	// ErrInvalid: a delivery of a kind DevOpstic uses that lacks what it needs.
	ErrInvalid = errors.New("invalid delivery")
)

// Header is a stream message's headers (a nats.Header), their names as the ingest wrote them.
type Header map[string][]string

// Get returns the first value of the header name, or "".
func (h Header) Get(name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Decoder maps a source's stream message (its headers and the delivery's raw body) to facts
// again, exactly as the ingest mapped the delivery. The writer keeps one per source.
type Decoder func(h Header, body []byte) (fact.Set, error)

// Decode is the body of a source's Decoder: it reads the options the ingest mapped the delivery
// with, stamped as JSON in the header named (none: the zero options), and maps it with parse.
// So the writer, and every replay, map a delivery exactly as the ingest judged it.
func Decode[O any](h Header, name string, parse func(opts O) (fact.Set, error)) (fact.Set, error) {
	var opts O
	if v := h.Get(name); v != "" {
		if err := json.Unmarshal([]byte(v), &opts); err != nil {
			return fact.Set{}, fmt.Errorf("header %s: %w", name, err)
		}
	}
	return parse(opts)
}

// Unmarshal reads a delivery's body into v, after refusing what Postgres could not store in the
// body or in the pipeline and environment its URL names (it would be accepted, then
// dead-lettered). Its errors say what is wrong; the source wraps them in its ErrInvalid.
func Unmarshal(body []byte, pipelineID, environment string, v any) error {
	if err := event.CheckDelivery(body, pipelineID, environment); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("body is not a JSON object: %w", err)
	}
	return nil
}

// When reads a required time: the payload's field, whose value is value (a Time, or a string).
// It reads RFC 3339 and its near variants (see event.ParseTime); a Time also epoch seconds.
func When[S ~string](field string, value S) (time.Time, error) {
	if value == "" {
		return time.Time{}, fmt.Errorf("%w: %s is missing", ErrInvalid, field)
	}
	t, err := event.ParseTime(string(value))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %w", ErrInvalid, field, err)
	}
	return t, nil
}
