package gitimport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
)

// Importer names this importer in the stream messages' HeaderImported.
const Importer = "git"

// ShipsPerEvent is the most commits one deploy event lists. A deployment that ships more is
// sent as several deploy events of the same deployment_id (so the same deployment), each listing
// some of them; it keeps every message far below the stream's size limit.
const ShipsPerEvent = 1000

// nativeEvent is a native event as POST /events takes it.
type nativeEvent struct {
	ID           string   `json:"id"`
	Type         string   `json:"type"`
	PipelineID   string   `json:"pipeline_id"`
	Environment  string   `json:"environment,omitempty"`
	CommitID     string   `json:"commit_id"`
	Commits      []string `json:"commits,omitempty"`
	DeploymentID string   `json:"deployment_id,omitempty"`
	Status       string   `json:"status,omitempty"`
	Timestamp    string   `json:"timestamp"`
}

// Events are the native events of a plan, for the pipeline and the environment its deployments
// go to: a commit event per change, then the deploy events. Their ids are functions of what they
// say (the commit, the deployment and its environment), so importing again sends the same ids,
// which the stream and the tables take once.
//
// A deployment's deployment_id is the tag's name, or the merge commit's id: a deploy event that
// a CI job sends with the same deployment_id to the same pipeline and environment is the same
// deployment.
func Events(p Plan, pipeline, environment string) ([][]byte, error) {
	var out [][]byte
	add := func(e nativeEvent) error {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.ID, err)
		}
		out = append(out, b)
		return nil
	}
	for _, c := range p.Changes {
		if err := add(nativeEvent{ID: "git:commit:" + c.ID, Type: event.TypeCommit, PipelineID: pipeline,
			CommitID: c.ID, Timestamp: timestamp(c.At)}); err != nil {
			return nil, err
		}
	}
	for _, d := range p.Deployments {
		deploymentID := d.Name
		if len(deploymentID) > event.MaxNameLength {
			deploymentID = hashed(deploymentID)
		}
		for part := 0; part == 0 || part*ShipsPerEvent < len(d.Ships); part++ {
			ships := d.Ships[min(part*ShipsPerEvent, len(d.Ships)):min((part+1)*ShipsPerEvent, len(d.Ships))]
			id := fmt.Sprintf("git:deploy:%s:%s:%d", environment, d.Commit, part)
			if len(id) > event.MaxIDLength {
				id = fmt.Sprintf("git:deploy:%s:%s:%d", hashed(environment), d.Commit, part)
			}
			if err := add(nativeEvent{ID: id, Type: event.TypeDeploy, PipelineID: pipeline, Environment: environment,
				CommitID: d.Commit, Commits: ships, DeploymentID: deploymentID, Status: event.StatusSuccess,
				Timestamp: timestamp(d.At)}); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// hashed stands for a name too long for a field: a hash of it.
func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + hex.EncodeToString(sum[:16])
}

// Summary says what a plan holds, and what git cannot tell, for the operator to read before
// anything is sent.
func Summary(h History, p Plan, d Deploys, w Window) string {
	var b strings.Builder
	fmt.Fprintf(&b, "branch %s at %s: %d commits in its history\n", h.Branch, shortID(h.Tip), len(h.Commits))
	window := "all of it"
	switch {
	case !w.Since.IsZero() && !w.Until.IsZero():
		window = fmt.Sprintf("from %s to %s", w.Since.UTC().Format(time.RFC3339), w.Until.UTC().Format(time.RFC3339))
	case !w.Since.IsZero():
		window = "since " + w.Since.UTC().Format(time.RFC3339)
	case !w.Until.IsZero():
		window = "until " + w.Until.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(&b, "window: %s\n", window)
	fmt.Fprintf(&b, "changes: %d commits", len(p.Changes))
	if len(p.Changes) > 0 || len(p.Deployments) > 0 {
		fmt.Fprintf(&b, ", history from %s to %s", p.First.UTC().Format(time.RFC3339), p.Last.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	switch {
	case d.TagGlob != "":
		fmt.Fprintf(&b, "deployments: %d tags matching %s", len(p.Deployments), d.TagGlob)
		if p.TagsOffBranch > 0 {
			fmt.Fprintf(&b, " (%d more match but are not on %s: left out)", p.TagsOffBranch, h.Branch)
		}
		b.WriteString("\n")
	case d.Merges:
		fmt.Fprintf(&b, "deployments: %d merges on the first-parent line of %s\n", len(p.Deployments), h.Branch)
	default:
		b.WriteString("deployments: none (--deploys tags=<glob> or --deploys merges says what a deployment is)\n")
	}
	b.WriteString("git cannot tell reviews, incidents or failed deployments: none are sent " +
		"(import github, or the webhooks, bring them)\n")
	return b.String()
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
