package oracle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// NativeSource is the source of native events: an incident's identity is (source, id).
const NativeSource = "native"

// nativeEvent is a native event's fields as docs/api.md's "Sending events" lists them.
type nativeEvent struct {
	ID            *string         `json:"id"`
	Type          string          `json:"type"`
	PipelineID    string          `json:"pipeline_id"`
	Environment   string          `json:"environment"`
	CommitID      string          `json:"commit_id"`
	Commits       []string        `json:"commits"`
	PullRequestID json.RawMessage `json:"pull_request_id"`
	DeploymentID  json.RawMessage `json:"deployment_id"`
	IncidentID    json.RawMessage `json:"incident_id"`
	Status        string          `json:"status"`
	Timestamp     json.RawMessage `json:"timestamp"`
}

// AddNative records one native event (a JSON object as posted to POST /events), delivered any
// number of times. Its identity is its `id` within its pipeline, or else its content with its
// time; a second delivery of the same identity changes nothing. It must carry a timestamp: the
// receive time that stands in for a missing one is not the reference's to know.
func (h *History) AddNative(raw []byte) error {
	var e nativeEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("oracle: native event: %w", err)
	}
	at, err := nativeTime(e.Timestamp)
	if err != nil {
		return err
	}
	if e.Status == "" {
		e.Status = Success
	}
	deploymentID, incidentID, pr := idText(e.DeploymentID), idText(e.IncidentID), idText(e.PullRequestID)
	commits := slices.Clone(e.Commits)
	slices.Sort(commits)
	content := strings.Join(append([]string{e.Type, e.PipelineID, e.Environment, e.CommitID, strconv.Itoa(len(commits))},
		append(commits, pr, deploymentID, incidentID, e.Status, at.UTC().Format(time.RFC3339Nano))...), "\x00")
	identity := "content\x00" + content
	if e.ID != nil && *e.ID != "" {
		identity = "id\x00" + e.PipelineID + "\x00" + *e.ID // unique within its pipeline
	}
	if have, ok := h.events[identity]; ok {
		if have != content {
			// Issue 13 leaves the rule for this open; a history must not depend on it.
			return fmt.Errorf("%w: id %q of pipeline %q reused with different content", ErrConflict, *e.ID, e.PipelineID)
		}
		return nil
	}
	h.events[identity] = content

	switch e.Type {
	case "commit":
		h.AddChangeTimes(ChangeTimes{Pipeline: e.PipelineID, Commit: e.CommitID, Committed: at})
	case "submit":
		h.AddChangeTimes(ChangeTimes{Pipeline: e.PipelineID, Commit: e.CommitID, Submitted: at})
	case "approve":
		h.AddChangeTimes(ChangeTimes{Pipeline: e.PipelineID, Commit: e.CommitID, Approved: at})
	case "deploy":
		key := deploymentID
		if key == "" {
			key = identity // each event without a deployment id is an attempt of its own
		}
		return h.AddDeployReport(DeployReport{
			Source: NativeSource, Pipeline: e.PipelineID, Environment: e.Environment,
			Key: key, DeploymentID: deploymentID, At: at, Status: e.Status,
			Ships: append([]string{e.CommitID}, e.Commits...),
		})
	case "incident_status_change":
		return h.AddIncidentReport(IncidentReport{
			Source: NativeSource, ID: incidentID, Pipeline: e.PipelineID, Environment: e.Environment,
			At: at, Status: e.Status, CauseDeployment: deploymentID, CauseCommit: e.CommitID,
		})
	default:
		return fmt.Errorf("oracle: native event type %q", e.Type)
	}
	return nil
}

// idText is an identifier sent as a string or an integer, as text; "" when absent or null.
func idText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// nativeTime reads a timestamp: epoch seconds (a decimal fraction allowed) or RFC 3339.
func nativeTime(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, fmt.Errorf("oracle: a native event needs a timestamp")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("oracle: timestamp: %w", err)
		}
		return t.UTC(), nil
	}
	secs, ok := new(big.Rat).SetString(string(raw))
	if !ok {
		return time.Time{}, fmt.Errorf("oracle: timestamp %s", raw)
	}
	nanos := new(big.Rat).Mul(secs, big.NewRat(1e9, 1))
	n := new(big.Int).Quo(nanos.Num(), nanos.Denom()) // below a nanosecond is dropped
	return time.Unix(0, n.Int64()).UTC(), nil
}
