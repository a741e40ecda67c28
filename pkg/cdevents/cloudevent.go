package cdevents

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/webhook"
)

// The CloudEvents HTTP binding's media types (structured and batched mode).
const (
	MediaStructured = "application/cloudevents+json"
	MediaBatch      = "application/cloudevents-batch+json"
)

// Binary mode's attribute headers, as the stream message keeps them: CloudEvents' required
// and optional context attributes, each ce-<name>. Extension attributes are not kept.
const (
	HeaderSpecVersion = "Ce-Specversion"
	HeaderID          = "Ce-Id"
	HeaderSource      = "Ce-Source"
	HeaderType        = "Ce-Type"
	HeaderSubject     = "Ce-Subject"
	HeaderTime        = "Ce-Time"
	HeaderDataSchema  = "Ce-Dataschema"
	// HeaderContentType is binary mode's datacontenttype.
	HeaderContentType = "Content-Type"
)

// attributeHeaders are the ce-* headers a binary-mode event is read from (and travels with on
// the stream, with its Content-Type).
var attributeHeaders = []string{HeaderSpecVersion, HeaderID, HeaderSource, HeaderType, HeaderSubject, HeaderTime, HeaderDataSchema}

// Envelope is one CloudEvent as DevOpstic reads it: the context attributes it uses and its data,
// the CDEvent. Raw is what the stream keeps of it, so that Decode reads it again exactly: the
// event's JSON document in structured and batched mode, the body in binary mode (its attributes
// then travel as the headers that Headers returns).
type Envelope struct {
	// Binary says the attributes came as ce-* headers; errors then name the headers.
	Binary bool
	// Index is the event's position in a batch, -1 outside one; errors then name it.
	Index int

	SpecVersion, ID, Source, Type, Subject, Time, DataSchema, DataContentType string

	Data json.RawMessage
	Raw  []byte
}

// Key is the CloudEvent's identity, its source and id (the CloudEvents spec: "Consumers MAY
// assume that Events with identical source and id are duplicates"), as a fixed-length text: a
// resent event has the same key, so the stream and the tables count it once. The two are hashed
// with the source's length first, so no pair of source and id can spell another pair.
func (e Envelope) Key() string {
	h := sha256.New()
	h.Write([]byte(strconv.Itoa(len(e.Source))))
	h.Write([]byte{':'})
	h.Write([]byte(e.Source))
	h.Write([]byte(e.ID))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// MessageID is the stream message's id (Nats-Msg-Id) and the events row's id.
func (e Envelope) MessageID() string {
	return Source + ":" + e.Key()
}

// Headers are a binary-mode event's attributes as its stream message carries them; nil in
// structured mode, where the document holds them.
func (e Envelope) Headers() map[string]string {
	if !e.Binary {
		return nil
	}
	h := map[string]string{}
	for name, v := range map[string]string{HeaderSpecVersion: e.SpecVersion, HeaderID: e.ID, HeaderSource: e.Source,
		HeaderType: e.Type, HeaderSubject: e.Subject, HeaderTime: e.Time, HeaderDataSchema: e.DataSchema,
		HeaderContentType: e.DataContentType} {
		if v != "" {
			h[name] = v
		}
	}
	return h
}

// field names an attribute as the sender wrote it: ce-id in binary mode, [2].id in a batch.
func (e Envelope) field(name string) string {
	switch {
	case e.Binary:
		return "header ce-" + name
	case e.Index >= 0:
		return fmt.Sprintf("[%d].%s", e.Index, name)
	}
	return name
}

// ErrMedia: a request that is no CloudEvent over HTTP (answered 415).
var ErrMedia = fmt.Errorf("not a CloudEvent")

// Read reads the CloudEvents of an HTTP request: structured mode (Content-Type
// application/cloudevents+json), batched mode (application/cloudevents-batch+json, a JSON
// array of structured events, at most max) or binary mode (the ce-* headers, which header
// returns, with the CDEvent as the body). It checks each event's CloudEvents attributes; what
// its CDEvent says is Parse's concern. Errors wrap ErrMedia, ErrInvalid or event.ErrTooMany.
func Read(contentType string, header func(string) string, body []byte, max int) ([]Envelope, error) {
	media := ""
	if contentType != "" {
		m, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, fmt.Errorf("%w: Content-Type %q does not parse", ErrMedia, contentType)
		}
		media = m
	}
	switch {
	case media == MediaStructured:
		e, err := Structured(body, -1)
		if err != nil {
			return nil, err
		}
		return []Envelope{e}, nil
	case media == MediaBatch:
		return batch(body, max)
	case header(HeaderSpecVersion) != "":
		e, err := Binary(contentType, header, body)
		if err != nil {
			return nil, err
		}
		return []Envelope{e}, nil
	}
	return nil, fmt.Errorf("%w: send Content-Type %s (structured mode), %s (batched mode), or the ce-* headers with the CDEvent as an application/json body (binary mode)",
		ErrMedia, MediaStructured, MediaBatch)
}

func batch(body []byte, max int) ([]Envelope, error) {
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '[' {
		return nil, fmt.Errorf("%w: a batch is a JSON array of CloudEvents", ErrInvalid)
	}
	raws, _, err := event.Split(body, false, max)
	if err != nil {
		return nil, err // event.ErrMalformed or event.ErrTooMany, which the ingest answers
	}
	out := make([]Envelope, len(raws))
	for i, raw := range raws {
		if out[i], err = Structured(raw, i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// structured is a CloudEvent in the JSON event format. Attributes are read as raw JSON so
// that a number where a string belongs is named rather than misread.
type structured struct {
	SpecVersion     json.RawMessage `json:"specversion"`
	ID              json.RawMessage `json:"id"`
	Source          json.RawMessage `json:"source"`
	Type            json.RawMessage `json:"type"`
	Subject         json.RawMessage `json:"subject"`
	Time            json.RawMessage `json:"time"`
	DataSchema      json.RawMessage `json:"dataschema"`
	DataContentType json.RawMessage `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      json.RawMessage `json:"data_base64"`
}

// Structured reads one CloudEvent in the JSON event format: a structured-mode body, or the
// element index of a batch (-1 for none).
func Structured(doc []byte, index int) (Envelope, error) {
	e := Envelope{Index: index, Raw: doc}
	if err := event.CheckJSONText(doc); err != nil {
		return e, fmt.Errorf("%w: %s: %w", ErrInvalid, e.where(), err)
	}
	var s structured
	if t := bytes.TrimSpace(doc); len(t) == 0 || t[0] != '{' || json.Unmarshal(doc, &s) != nil {
		return e, fmt.Errorf("%w: %s is not a JSON object", ErrInvalid, e.where())
	}
	for _, a := range []struct {
		name string
		raw  json.RawMessage
		into *string
	}{
		{"specversion", s.SpecVersion, &e.SpecVersion}, {"source", s.Source, &e.Source},
		{"type", s.Type, &e.Type}, {"subject", s.Subject, &e.Subject}, {"time", s.Time, &e.Time},
		{"dataschema", s.DataSchema, &e.DataSchema}, {"datacontenttype", s.DataContentType, &e.DataContentType},
	} {
		if len(a.raw) == 0 || string(a.raw) == "null" {
			continue
		}
		if err := json.Unmarshal(a.raw, a.into); err != nil {
			return e, fmt.Errorf("%w: %s must be a string", ErrInvalid, e.field(a.name))
		}
	}
	// CloudEvents wants a string id; tools imitating it send numbers too. 7 and "7" are one event.
	if len(s.ID) > 0 {
		var id webhook.ID
		if err := json.Unmarshal(s.ID, &id); err != nil {
			return e, fmt.Errorf("%w: %s must be a string or a number: %w", ErrInvalid, e.field("id"), err)
		}
		e.ID = id.String()
	}
	if len(s.DataBase64) > 0 && len(s.Data) == 0 {
		return e, fmt.Errorf("%w: %s: send the CDEvent as JSON in data, not base64", ErrInvalid, e.field("data_base64"))
	}
	if !jsonContent(e.DataContentType) {
		return e, fmt.Errorf("%w: %s is %q: a CDEvent is JSON (application/json)", ErrInvalid, e.field("datacontenttype"), e.DataContentType)
	}
	e.Data = s.Data
	return e, e.check()
}

// Binary reads a binary-mode CloudEvent: its attributes from the ce-* headers (header returns
// a request header's value), its data the body, of the given Content-Type.
func Binary(contentType string, header func(string) string, body []byte) (Envelope, error) {
	e := Envelope{Binary: true, Index: -1, Raw: body, Data: body}
	if err := event.CheckHeader(contentType); err != nil {
		return e, fmt.Errorf("%w: header %s: %w", ErrInvalid, HeaderContentType, err)
	}
	for _, name := range attributeHeaders {
		if err := event.CheckHeader(header(name)); err != nil {
			return e, fmt.Errorf("%w: header %s: %w", ErrInvalid, name, err)
		}
	}
	e.SpecVersion, e.ID, e.Source = header(HeaderSpecVersion), header(HeaderID), header(HeaderSource)
	e.Type, e.Subject, e.Time = header(HeaderType), header(HeaderSubject), header(HeaderTime)
	e.DataSchema, e.DataContentType = header(HeaderDataSchema), contentType
	if !jsonContent(e.DataContentType) {
		return e, fmt.Errorf("%w: Content-Type is %q: in binary mode the body is the CDEvent, application/json", ErrMedia, e.DataContentType)
	}
	if err := event.CheckJSONText(body); err != nil {
		return e, fmt.Errorf("%w: body: %w", ErrInvalid, err)
	}
	return e, e.check()
}

// check refuses a CloudEvent without the attributes CloudEvents requires, or of a version it
// does not read.
func (e Envelope) check() error {
	for _, a := range []struct{ name, value string }{{"specversion", e.SpecVersion}, {"id", e.ID}, {"source", e.Source}, {"type", e.Type}} {
		if a.value == "" {
			return fmt.Errorf("%w: %s is missing", ErrInvalid, e.field(a.name))
		}
	}
	if e.SpecVersion != "1.0" {
		return fmt.Errorf("%w: %s is %q; DevOpstic reads CloudEvents 1.0", ErrInvalid, e.field("specversion"), e.SpecVersion)
	}
	return nil
}

// where names the event in an error: the body, or its place in a batch.
func (e Envelope) where() string {
	if e.Index >= 0 {
		return fmt.Sprintf("[%d]", e.Index)
	}
	return "body"
}

// jsonContent reports whether a datacontenttype is JSON; none is (the JSON event format's
// default).
func jsonContent(contentType string) bool {
	if contentType == "" {
		return true
	}
	media, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return media == "application/json" || media == "text/json" || strings.HasSuffix(media, "+json")
}

// ErrIgnored and ErrInvalid are webhook's: an event DevOpstic does not use (answered 202, so
// the sender does not retry it), and one of a kind it uses that lacks what it needs (400).
var ErrIgnored, ErrInvalid = webhook.ErrIgnored, webhook.ErrInvalid
