// Package cdevents reads CDEvents (cdevents.dev, spec versions 0.4 and 0.5), the CD
// Foundation's vocabulary for CI/CD facts, carried as CloudEvents over HTTP in structured,
// batched or binary mode, and maps the ones DORA needs to facts: a change's times, deployments
// (a rollback marking the deployment it names as failed) and incidents.
//
// Read takes a request apart into CloudEvents; Parse maps one of them and is a pure function of
// it and of Options, which the ingest stamps into the stream message's headers, so the writer and
// every replay map an event exactly as the ingest judged it (Decode). Times come from the
// CDEvent's context.timestamp, never from the clock.
//
// The mapping, and the rollback rule, are written down for users in docs/cdevents.md.
package cdevents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/webhook"
)

// Source names CDEvents in the tables and on the stream.
const Source = "cdevents"

// HeaderOptions carries the Options in force when the event came in (JSON).
const HeaderOptions = "Devopstic-Cdevents-Options"

// Options are what the URL said when the event came in.
type Options struct {
	// PipelineID and Environment override what the event names (?pipeline_id=, ?environment=).
	PipelineID, Environment string
}

// typePrefix starts every CDEvent type: dev.cdevents.<subject>.<predicate>.<version>.
const typePrefix = "dev.cdevents."

// used are the event types DevOpstic maps (subject.predicate), with their kind: the stream
// subject's last token and the events row's kind.
var used = map[string]string{
	"change.created":     "change_created",
	"change.reviewed":    "change_reviewed",
	"change.merged":      "change_merged",
	"service.deployed":   "service_deployed",
	"service.upgraded":   "service_upgraded",
	"service.rolledback": "service_rolledback",
	"incident.detected":  "incident_detected",
	"incident.reported":  "incident_reported",
	"incident.resolved":  "incident_resolved",
}

// Delivery is a mapped CloudEvent.
type Delivery struct {
	Set fact.Set
}

// Decode maps an event again from its stream message (the ce-* headers in binary mode, the
// CloudEvent's document otherwise), with the Options the ingest mapped it with.
func Decode(h webhook.Header, body []byte) (fact.Set, error) {
	return webhook.Decode(h, HeaderOptions, func(opts Options) (fact.Set, error) {
		var e Envelope
		var err error
		if h.Get(HeaderSpecVersion) != "" {
			e, err = Binary(h.Get(HeaderContentType), h.Get, body)
		} else {
			e, err = Structured(body, -1)
		}
		if err != nil {
			return fact.Set{}, err
		}
		d, err := Parse(e, opts)
		return d.Set, err
	})
}

// EventType splits a CDEvent type into its subject.predicate and version. ok is false for a
// type that is not a CDEvent's.
func EventType(t string) (name, version string, ok bool) {
	rest, ok := strings.CutPrefix(t, typePrefix)
	if !ok {
		return "", "", false
	}
	subject, rest, ok := strings.Cut(rest, ".")
	if !ok || subject == "" {
		return "", "", false
	}
	predicate, version, _ := strings.Cut(rest, ".")
	if predicate == "" {
		return "", "", false
	}
	return subject + "." + predicate, version, true
}

// cdevent is what DevOpstic reads of a CDEvent, in spec versions 0.4 and 0.5.
type cdevent struct {
	Context *struct {
		Version     string       `json:"version"`     // 0.4
		SpecVersion string       `json:"specversion"` // 0.5
		ID          webhook.ID   `json:"id"`
		Type        string       `json:"type"`
		Timestamp   webhook.Time `json:"timestamp"`
		Links       []link       `json:"links"`
	} `json:"context"`
	Subject *struct {
		ID      webhook.ID `json:"id"`
		Content struct {
			Repository  *reference `json:"repository"`
			Environment *reference `json:"environment"`
			Service     *reference `json:"service"`
			ArtifactID  string     `json:"artifactId"`
		} `json:"content"`
	} `json:"subject"`
}

// reference is a subject's repository, environment or service, by its id.
type reference struct {
	ID webhook.ID `json:"id"`
}

// link is a CDEvents link (spec 0.4 and later): a relation to another event by its context id.
type link struct {
	LinkType string      `json:"linkType"`
	From     *contextRef `json:"from"`
	Target   *contextRef `json:"target"`
}

// contextRef names another event by its context id (the CloudEvent id).
type contextRef struct {
	ContextID webhook.ID `json:"contextId"`
}

// Parse maps a CloudEvent whose data is a CDEvent to facts. A CloudEvent of a type DevOpstic does
// not use is ErrIgnored, whatever its data; one it uses that lacks what the facts need is
// ErrInvalid, naming the field. The Set's Event has everything but the id, receive time and
// stream sequence, which the caller adds.
func Parse(e Envelope, opts Options) (Delivery, error) {
	name, _, ok := EventType(e.Type)
	if !ok {
		return Delivery{}, fmt.Errorf("%w: %s %q is not a CDEvent type (dev.cdevents.<subject>.<predicate>.<version>)", ErrIgnored, e.field("type"), e.Type)
	}
	kind, ok := used[name]
	if !ok {
		return Delivery{}, fmt.Errorf("%w: DevOpstic does not use %s events", ErrIgnored, name)
	}
	if err := event.CheckDelivery(e.Data, opts.PipelineID, opts.Environment); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if t := bytes.TrimSpace(e.Data); len(t) == 0 || t[0] != '{' {
		return Delivery{}, fmt.Errorf("%w: %s must be the CDEvent, a JSON object", ErrInvalid, e.dataField())
	}
	var cd cdevent
	if err := json.Unmarshal(e.Data, &cd); err != nil {
		return Delivery{}, fmt.Errorf("%w: %s: %w", ErrInvalid, e.dataField(), err)
	}
	m := mapping{env: e, cd: cd, Mapper: webhook.Mapper{Source: Source, URLPipeline: opts.PipelineID, URLEnvironment: opts.Environment}}
	if err := m.context(name); err != nil {
		return Delivery{}, err
	}
	var err error
	switch subject, _, _ := strings.Cut(name, "."); subject {
	case "change":
		err = m.change(name)
	case "service":
		err = m.service(name)
	case "incident":
		err = m.incident(name)
	}
	if err != nil {
		return Delivery{}, err
	}
	return Delivery{Set: m.Done(kind, e.Raw).Set}, nil
}

// mapping is one CDEvent being mapped.
type mapping struct {
	webhook.Mapper
	env Envelope
	cd  cdevent
	at  time.Time
}

// versions are the CDEvents spec versions DevOpstic reads: their shapes of the events it uses
// are the same (0.5 renamed context.version to context.specversion and dropped subject.type).
var versions = []string{"0.4", "0.5"}

// context checks the CDEvent's context and reads its time.
func (m *mapping) context(name string) error {
	c := m.cd.Context
	if c == nil {
		return fmt.Errorf("%w: %s is missing", ErrInvalid, m.data("context"))
	}
	version, field := c.SpecVersion, "context.specversion"
	if version == "" {
		version, field = c.Version, "context.version"
	}
	if version == "" {
		return fmt.Errorf("%w: %s is missing (context.version in CDEvents 0.4)", ErrInvalid, m.data("context.specversion"))
	}
	if !supported(version) {
		return fmt.Errorf("%w: %s is %q; DevOpstic reads CDEvents %s", ErrInvalid, m.data(field), version, strings.Join(versions, " and "))
	}
	if c.Type != "" {
		if own, _, _ := EventType(c.Type); own != name {
			return fmt.Errorf("%w: %s is %q, another event than the CloudEvent's type %q", ErrInvalid, m.data("context.type"), c.Type, m.env.Type)
		}
	}
	// The CDEvents binding sets the CloudEvent's time to context.timestamp; the CDEvent's own
	// field wins, the attribute stands in for it.
	field, value := m.data("context.timestamp"), c.Timestamp
	if value == "" && m.env.Time != "" {
		field, value = m.env.field("time"), webhook.Time(m.env.Time)
	}
	at, err := webhook.When(field, value)
	if err != nil {
		return err
	}
	m.at = at
	if m.cd.Subject == nil || m.cd.Subject.ID == "" {
		return fmt.Errorf("%w: %s is missing", ErrInvalid, m.data("subject.id"))
	}
	return nil
}

func supported(version string) bool {
	for _, v := range versions {
		if version == v || strings.HasPrefix(version, v+".") {
			return true
		}
	}
	return false
}

// change maps change.created (submitted), change.reviewed and change.merged (approved: the
// earliest of the two is kept, so a merge approves a change that no review did). The change is
// the subject's id, the commit as the SCM names it; its pipeline the repository's id.
func (m *mapping) change(name string) error {
	s := m.cd.Subject
	m.NamedBy = m.data("subject.content.repository.id")
	if s.Content.Repository != nil {
		m.Named = s.Content.Repository.ID.String()
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	at := m.at
	c := fact.Change{PipelineID: m.Pipeline(), CommitID: s.ID.String()}
	if name == "change.created" {
		c.SubmittedAt = &at
	} else {
		c.ApprovedAt = &at
	}
	m.Set.Changes = []fact.Change{c}
	m.Set.Event.CommitID, m.Set.Event.OccurredAt = s.ID.String(), at
	return nil
}

// service maps service.deployed, upgraded and rolledback: a successful deployment of the
// artifact's commit to the environment, keyed by the CloudEvent (its source and id), with the
// event's id as the deployment id that links and incidents name. A rollback also marks as failed
// the deployments it links to (see rollback).
func (m *mapping) service(name string) error {
	s := m.cd.Subject
	m.Named, m.NamedBy = s.ID.String(), m.data("subject.id")
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	env := m.URLEnvironment
	if env == "" && s.Content.Environment != nil {
		env = s.Content.Environment.ID.String()
	}
	if env == "" {
		return fmt.Errorf("%w: %s is missing (or add ?environment= to the URL)", ErrInvalid, m.data("subject.content.environment.id"))
	}
	if s.Content.ArtifactID == "" {
		return fmt.Errorf("%w: %s is missing: it names what was deployed", ErrInvalid, m.data("subject.content.artifactId"))
	}
	commit := Commit(s.Content.ArtifactID)
	m.Deploy(env, m.env.Key(), m.env.ID, fact.StatusSuccess, m.at, commit)
	if name == "service.rolledback" {
		m.rollback(env)
	}
	return nil
}

// rollback records what a rollback says of the deployment it replaces: that it failed. A
// CDEvent carries no field for the deployment a rollback replaces; CDEvents' links are how one
// event names another, so every event that the rollback's context.links name (a RELATION's
// target, a PATH's or END's from) is taken for a deployment it reverts, by the CloudEvent id
// that DevOpstic keeps as that deployment's id. Each becomes an incident of the pipeline and
// environment that names it as its cause and is resolved by the rollback: it counts the named
// deployment as failed, and, having no opening, never counts as an incident to restore.
func (m *mapping) rollback(env string) {
	seen := map[string]bool{m.env.ID: true}
	for _, l := range m.cd.Context.Links {
		for _, end := range []*contextRef{l.Target, l.From} {
			if end == nil || end.ContextID == "" || seen[end.ContextID.String()] {
				continue
			}
			seen[end.ContextID.String()] = true
			at := m.at
			m.Set.Incidents = append(m.Set.Incidents, fact.Incident{
				Source: Source, IncidentID: "rollback:" + m.env.Key() + ":" + end.ContextID.String(),
				PipelineID: m.Pipeline(), Environment: env, ResolvedAt: &at, CauseDeploymentID: end.ContextID.String(),
			})
		}
	}
}

// incident maps incident.detected and reported (opened) and incident.resolved. The incident is
// the subject's id; its pipeline the service's id; its environment the environment's id, else
// production. An opening names its cause by its artifact's commit; a resolution's artifact is
// the one that fixed it, and names nothing.
func (m *mapping) incident(name string) error {
	s := m.cd.Subject
	m.NamedBy = m.data("subject.content.service.id")
	if s.Content.Service != nil {
		m.Named = s.Content.Service.ID.String()
	}
	if err := m.RequirePipeline(); err != nil {
		return err
	}
	env := ""
	if s.Content.Environment != nil {
		env = s.Content.Environment.ID.String()
	}
	at := m.at
	inc := fact.Incident{Source: Source, IncidentID: s.ID.String(), PipelineID: m.Pipeline(), Environment: m.Environment(env)}
	status := fact.StatusFailure
	if name == "incident.resolved" {
		inc.ResolvedAt, status = &at, fact.StatusSuccess
	} else {
		inc.OpenedAt = &at
		if s.Content.ArtifactID != "" {
			inc.CauseCommitID = Commit(s.Content.ArtifactID)
		}
	}
	m.Set.Incidents = []fact.Incident{inc}
	m.Set.Event.IncidentID, m.Set.Event.Environment, m.Set.Event.CommitID = inc.IncidentID, inc.Environment, inc.CauseCommitID
	m.Set.Event.Status, m.Set.Event.OccurredAt = status, at
	return nil
}

// data names a field of the CDEvent, the CloudEvent's data.
func (m *mapping) data(path string) string {
	return m.env.dataField() + "." + path
}

// dataField names the CloudEvent's data: the body in binary mode, data (in a batch, [i].data)
// otherwise.
func (e Envelope) dataField() string {
	switch {
	case e.Binary:
		return "body"
	case e.Index >= 0:
		return fmt.Sprintf("[%d].data", e.Index)
	}
	return "data"
}

// Commit is the commit an artifactId names: a package URL's version (percent-decoded: the
// commit of pkg:golang/example.com/app@1a2b3c, the digest of pkg:oci/app@sha256%3A...), or
// the artifactId itself when it is not a purl or has no version. The spec asks for a purl;
// DevOpstic takes any identifier, since what it needs is one that a change or an incident can
// name too.
func Commit(artifactID string) string {
	rest, ok := strings.CutPrefix(artifactID, "pkg:")
	if !ok {
		return artifactID
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 || at == len(rest)-1 {
		return artifactID
	}
	version, err := url.PathUnescape(rest[at+1:])
	if err != nil {
		return rest[at+1:]
	}
	return version
}
