package api

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/store"
)

// Paging defaults: the original API returned the whole table; this one pages.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

type listBody[T any] struct {
	Items []T `json:"items"`
	Count int `json:"count"`
	Skip  int `json:"skip"`
	Limit int `json:"limit"`
}

// eventItem keeps the original API's fields (timestamp in epoch seconds) beside the new ones.
type eventItem struct {
	store.Event
	Timestamp  int64     `json:"timestamp"`
	OccurredAt time.Time `json:"occurred_at"`
}

func (s *server) getEvents(c *fiber.Ctx) error {
	var f store.EventFilter
	var err error
	if f.Page, err = page(c); err != nil {
		return fail(c, err)
	}
	if f.From, f.To, err = window(c); err != nil {
		return fail(c, err)
	}
	f.PipelineID, f.Environment, f.Kind = c.Query("pipeline_id"), c.Query("environment"), c.Query("type")
	if f.Kind != "" && !knownKind(f.Kind) {
		return fail(c, fmt.Errorf("%w: type must be one of commit, submit, approve, deploy, incident_status_change", errBadParameter))
	}
	events, total, err := s.deps.Store.Events(c.UserContext(), f)
	if err != nil {
		return fail(c, err)
	}
	items := make([]eventItem, len(events))
	for i, e := range events {
		items[i] = eventItem{Event: e, Timestamp: e.OccurredAt.Unix(), OccurredAt: e.OccurredAt.UTC()}
	}
	return c.JSON(listBody[eventItem]{Items: items, Count: total, Skip: f.Skip, Limit: f.Limit})
}

func (s *server) getCommits(c *fiber.Ctx) error {
	var f store.ChangeFilter
	var err error
	if f.Page, err = page(c); err != nil {
		return fail(c, err)
	}
	if f.From, f.To, err = window(c); err != nil {
		return fail(c, err)
	}
	f.PipelineID = c.Query("pipeline_id")
	changes, total, err := s.deps.Store.Changes(c.UserContext(), f)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(listBody[store.Change]{Items: changes, Count: total, Skip: f.Skip, Limit: f.Limit})
}

func knownKind(k string) bool {
	switch k {
	case event.TypeCommit, event.TypeSubmit, event.TypeApprove, event.TypeDeploy, event.TypeIncidentStatus:
		return true
	}
	return false
}

func page(c *fiber.Ctx) (store.Page, error) {
	p := store.Page{Limit: defaultLimit}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return p, fmt.Errorf("%w: limit must be an integer from 1 to %d, not %q", errBadParameter, maxLimit, v)
		}
		p.Limit = n
	}
	if v := c.Query("skip"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, fmt.Errorf("%w: skip must be a non-negative integer, not %q", errBadParameter, v)
		}
		p.Skip = n
	}
	return p, nil
}

// window reads from and to: RFC 3339, YYYY-MM-DD (UTC midnight) or epoch seconds.
func window(c *fiber.Ctx) (from, to *time.Time, err error) {
	if from, err = instant("from", c.Query("from")); err != nil {
		return nil, nil, err
	}
	if to, err = instant("to", c.Query("to")); err != nil {
		return nil, nil, err
	}
	if from != nil && to != nil && !from.Before(*to) {
		return nil, nil, fmt.Errorf("%w: from must be before to", errBadParameter)
	}
	return from, to, nil
}

func instant(name, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return &t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return &t, nil
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
		t := time.Unix(secs, 0).UTC()
		return &t, nil
	}
	return nil, fmt.Errorf("%w: %s must be an RFC 3339 time, a YYYY-MM-DD date or epoch seconds, not %q", errBadParameter, name, v)
}
