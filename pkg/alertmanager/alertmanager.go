// Package alertmanager authenticates Prometheus Alertmanager webhook notifications and maps
// their alerts to incidents.
//
// Verify checks the Authorization header (a bearer token, or basic auth with the token as the
// password: what Alertmanager's http_config can send) before anything is parsed. Parse is a
// pure function of the body and of Options, which the ingest stamps into the stream message's
// headers, so the writer and every replay map a notification exactly as the ingest judged it.
// Times come from the alerts (startsAt, endsAt), never from the clock.
package alertmanager

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook"
)

// Source names Alertmanager in the tables and on the stream.
const Source = "alertmanager"

// HeaderOptions carries the Options in force when the notification came in (JSON).
const HeaderOptions = "Devopstic-Alertmanager-Options"

// DefaultSelector is the alerts that are incidents when the operator names none.
const DefaultSelector = "severity=critical"

// Errors of a notification.
var (
	// ErrCredentials: the Authorization header is missing or matches no configured token.
	ErrCredentials = errors.New("bad credentials")
	// ErrIgnored: a notification with no alert DevOpstic counts as an incident.
	ErrIgnored = webhook.ErrIgnored
	// ErrInvalid: a notification that cannot be mapped.
	ErrInvalid = errors.New("invalid notification")
)

// Verify checks an Authorization header against every token: "Bearer <token>", or "Basic"
// with the token as the password (any user name). Constant time; no token, refused.
func Verify(tokens []string, authorization string) error {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	cred = strings.TrimSpace(cred)
	var given string
	switch {
	case authorization == "":
		return fmt.Errorf("%w: no Authorization header", ErrCredentials)
	case strings.EqualFold(scheme, "Bearer"):
		given = cred
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return fmt.Errorf("%w: basic credentials are not base64", ErrCredentials)
		}
		_, given, _ = strings.Cut(string(raw), ":")
	default:
		return fmt.Errorf("%w: Authorization must be Bearer or Basic", ErrCredentials)
	}
	if given == "" {
		return fmt.Errorf("%w: empty token", ErrCredentials)
	}
	if !webhook.MatchToken(tokens, given) {
		return fmt.Errorf("%w: the token matches no configured token", ErrCredentials)
	}
	return nil
}

// Matcher is one condition on an alert's labels: name=value (the value in any case), or
// name=~regexp (anchored at both ends, as in Alertmanager's own matchers).
type Matcher struct {
	Name, Value string
	Regexp      *regexp.Regexp
}

func (m Matcher) matches(labels map[string]string) bool {
	v, ok := labels[m.Name]
	if m.Regexp != nil {
		return m.Regexp.MatchString(v)
	}
	return ok && strings.EqualFold(v, m.Value)
}

// ParseSelector reads DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL: comma-separated name=value or
// name=~regexp conditions, all of which an alert's labels must meet.
func ParseSelector(s string) ([]Matcher, error) {
	var ms []Matcher
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		name, value, ok := strings.Cut(part, "=")
		m := Matcher{Name: strings.TrimSpace(name)}
		if re, isRegexp := strings.CutPrefix(value, "~"); isRegexp {
			var err error
			if m.Regexp, err = regexp.Compile("^(?:" + strings.TrimSpace(re) + ")$"); err != nil {
				return nil, fmt.Errorf("%q: %w", part, err)
			}
			value = re
		}
		m.Value = strings.TrimSpace(value)
		if !ok || m.Name == "" || m.Value == "" {
			return nil, fmt.Errorf("%q is not name=value or name=~regexp (such as severity=critical)", part)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// Options are what the operator configured, and what the webhook's URL said, when the
// notification came in.
type Options struct {
	// PipelineID and Environment override the alerts' labels (?pipeline_id=, ?environment=).
	PipelineID, Environment string
	// Selector picks the alerts that are incidents (DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL);
	// DefaultSelector when empty.
	Selector string
}

// Decode maps a notification again from its stream message, with the Options the ingest mapped
// it with.
func Decode(h webhook.Header, body []byte) (fact.Set, error) {
	return webhook.Decode(h, HeaderOptions, func(opts Options) (fact.Set, error) {
		d, err := Parse(body, opts)
		return d.Set, err
	})
}

// Delivery is a mapped notification: its facts, and the alerts that could not be used.
type Delivery = webhook.Delivery

// Kind is the stream subject's last token: the notification's status.
func Kind(status string) string {
	if status == "firing" || status == "resolved" {
		return status
	}
	return "alerts"
}

type alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	StartsAt    webhook.Time      `json:"startsAt"`
	EndsAt      webhook.Time      `json:"endsAt"`
	Fingerprint webhook.ID        `json:"fingerprint"`
}

type payload struct {
	Version string   `json:"version"`
	Status  string   `json:"status"`
	Alerts  *[]alert `json:"alerts"`
}

// Parse maps a notification (webhook format version 4) to one incident per alert that the
// selector picks. An alert that cannot be mapped (no pipeline, no start) is left out with a
// warning; a notification none of whose picked alerts can be mapped is invalid.
func Parse(body []byte, opts Options) (Delivery, error) {
	sel := opts.Selector
	if sel == "" {
		sel = DefaultSelector
	}
	matchers, err := ParseSelector(sel)
	if err != nil {
		return Delivery{}, fmt.Errorf("%w: selector: %w", ErrInvalid, err)
	}
	var p payload
	if err := webhook.Unmarshal(body, opts.PipelineID, opts.Environment, &p); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if p.Alerts == nil {
		return Delivery{}, fmt.Errorf("%w: alerts is missing", ErrInvalid)
	}
	var (
		d        Delivery
		picked   int
		problems []string
	)
	if p.Version != "" && p.Version != "4" {
		d.Warnings = append(d.Warnings, fmt.Sprintf("version %q: read as version 4", p.Version))
	}
	for i, a := range *p.Alerts {
		if !matches(a.Labels, matchers) {
			continue
		}
		picked++
		inc, err := mapAlert(a, p.Status, opts)
		if err != nil {
			problems = append(problems, fmt.Sprintf("alerts[%d].%v", i, err))
			continue
		}
		d.Set.Incidents = append(d.Set.Incidents, inc)
	}
	if picked == 0 {
		return Delivery{}, fmt.Errorf("%w: no alert has the labels %s", ErrIgnored, sel)
	}
	if len(d.Set.Incidents) == 0 {
		return Delivery{}, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	d.Warnings = append(d.Warnings, problems...)

	first := d.Set.Incidents[0]
	e := fact.Event{
		Source: Source, Kind: Kind(p.Status), PipelineID: first.PipelineID, Environment: first.Environment,
		Status: fact.StatusSuccess, Payload: body,
	}
	if len(d.Set.Incidents) == 1 {
		e.IncidentID = first.IncidentID
	}
	for _, inc := range d.Set.Incidents {
		at := *inc.OpenedAt
		if inc.ResolvedAt == nil {
			e.Status = fact.StatusFailure // something is still firing
		} else {
			at = *inc.ResolvedAt
		}
		if at.After(e.OccurredAt) {
			e.OccurredAt = at
		}
	}
	d.Set.Event = e
	return d, nil
}

func matches(labels map[string]string, ms []Matcher) bool {
	for _, m := range ms {
		if !m.matches(labels) {
			return false
		}
	}
	return true
}

// mapAlert maps one picked alert. Its errors name the field after "alerts[i].".
func mapAlert(a alert, groupStatus string, opts Options) (fact.Incident, error) {
	pipeline := cmp.Or(opts.PipelineID, a.Labels["service"], a.Labels["job"])
	if pipeline == "" {
		return fact.Incident{}, errors.New("labels.service (or job) is missing: add ?pipeline_id= to the webhook URL")
	}
	if a.StartsAt == "" {
		return fact.Incident{}, errors.New("startsAt is missing")
	}
	started, err := event.ParseTime(a.StartsAt.String())
	if err != nil {
		return fact.Incident{}, fmt.Errorf("startsAt: %w", err)
	}
	if started.Year() <= 1 {
		return fact.Incident{}, errors.New("startsAt is the zero time")
	}
	fingerprint := a.Fingerprint.String()
	if fingerprint == "" {
		// Alertmanager before 0.19 sent none; this is the one it would have sent.
		fingerprint = Fingerprint(a.Labels)
	}
	inc := fact.Incident{
		Source: Source,
		// The fingerprint names the alert, which fires again and again over the months; its
		// start names this one episode, so two outages stay two incidents.
		IncidentID:  fingerprint + "@" + started.Format(time.RFC3339Nano),
		PipelineID:  pipeline,
		Environment: cmp.Or(opts.Environment, a.Labels["environment"], a.Labels["env"], "production"),
		OpenedAt:    &started,
	}
	if cmp.Or(a.Status, groupStatus) == "resolved" {
		if a.EndsAt == "" {
			return fact.Incident{}, errors.New("endsAt is missing from a resolved alert")
		}
		ended, err := event.ParseTime(a.EndsAt.String())
		if err != nil {
			return fact.Incident{}, fmt.Errorf("endsAt: %w", err)
		}
		if ended.Year() <= 1 {
			return fact.Incident{}, errors.New("endsAt of a resolved alert is the zero time")
		}
		inc.ResolvedAt = &ended
	}
	return inc, nil
}

// Fingerprint is Prometheus' fingerprint of a label set (model.LabelSet.Fingerprint): FNV-1a
// over the names in order, each name and value followed by the byte 0xff, in 16 hex digits.
func Fingerprint(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for name := range labels {
		names = append(names, name)
	}
	slices.Sort(names)
	h := fnv.New64a()
	for _, name := range names {
		h.Write([]byte(name))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[name]))
		h.Write([]byte{0xff})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}
