package history

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/oracle"
)

// makeTestSeeds are the seeds `make test` runs (services/devopstic's property test).
const makeTestSeeds = 3

func TestSameSeedSameHistory(t *testing.T) {
	t.Parallel()
	a, b := Generate(42, nil), Generate(42, nil)
	require.Equal(t, a, b)
	require.NotEqual(t, a.Events, Generate(43, nil).Events)
}

// A shape left out by default differs from the default history in the shape's events only:
// short SHAs where the default names the cause otherwise, and commit events it does not have.
// (GitHubMerge makes another history.)
func TestShapesChangeOnlyTheirEvents(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 20; seed++ {
		plain := Generate(seed, nil)
		all := Generate(seed, map[Shape]bool{ShortSHA: true, TierBounds: true})
		require.Equal(t, plain.Pipelines, all.Pipelines)
		inPlain := map[string]bool{}
		for _, e := range plain.Events {
			inPlain[string(e)] = true
		}
		var changed, short int
		for _, e := range all.Events {
			if inPlain[string(e)] {
				continue
			}
			var f map[string]any
			require.NoError(t, json.Unmarshal(e, &f))
			c, _ := f["commit_id"].(string)
			switch {
			case f["type"] == "commit":
			case f["type"] == "incident_status_change" && len(c) < 40:
				short++
			default:
				require.Fail(t, "an event the shapes do not explain", "seed %d: %s", seed, e)
			}
			changed++
		}
		require.Equal(t, len(plain.Events)+changed-short, len(all.Events), "seed %d", seed)
	}
}

// What the property test's default seeds cover: every shape of the package comment, at least
// once.
func TestDefaultSeedsCoverTheShapes(t *testing.T) {
	t.Parallel()
	seen := map[string]int{}
	for seed := uint64(1); seed <= makeTestSeeds; seed++ {
		h := Generate(seed, nil)
		idsByPipeline := map[string]map[string]bool{}
		shaPipelines := map[string]map[string]bool{}
		type attemptKey struct{ pipeline, env, id string }
		attemptStatuses := map[attemptKey]map[string]bool{}
		deployed := map[string]int{}
		incidentEvents := map[string][]map[string]any{}
		for _, raw := range h.Events {
			var e map[string]any
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			require.NoError(t, dec.Decode(&e))
			p, _ := e["pipeline_id"].(string)
			if id, ok := e["id"].(string); ok {
				seen["client id"]++
				if idsByPipeline[id] == nil {
					idsByPipeline[id] = map[string]bool{}
				}
				idsByPipeline[id][p] = true
				if len(idsByPipeline[id]) == 2 {
					seen["one client id in two pipelines"]++
				}
			} else {
				seen["no client id"]++
			}
			switch ts := fmt.Sprint(e["timestamp"]); {
			case strings.Contains(ts, "Z"):
				seen["RFC 3339 in UTC"]++
			case strings.Contains(ts, "T"):
				seen["RFC 3339 with an offset"]++
			default:
				seen["epoch seconds"]++
			}
			if ts := fmt.Sprint(e["timestamp"]); strings.Contains(ts, ".") {
				seen["fractional seconds"]++
			}
			if c, ok := e["commit_id"].(string); ok && e["type"] != "incident_status_change" {
				if shaPipelines[c] == nil {
					shaPipelines[c] = map[string]bool{}
				}
				shaPipelines[c][p] = true
				if len(shaPipelines[c]) == 2 {
					seen["one SHA in two pipelines"]++
				}
			}
			switch e["type"] {
			case "deploy":
				commits, _ := e["commits"].([]any)
				if len(commits) >= 2 {
					seen["multi-commit deployment"]++
				}
				for i, c := range commits {
					if c == e["commit_id"] {
						seen["head listed in commits"]++
					}
					for _, d := range commits[:i] {
						if c == d {
							seen["a commit listed twice"]++
						}
					}
				}
				status, _ := e["status"].(string)
				if status == "" {
					seen["status left to its default"]++
					status = "success"
				}
				if status == "failure" {
					seen["failed attempt"]++
				}
				if id, ok := e["deployment_id"]; ok {
					if _, isNumber := id.(json.Number); isNumber {
						seen["deployment id as a number"]++
					}
					k := attemptKey{p, e["environment"].(string), fmt.Sprint(id)}
					if attemptStatuses[k] == nil {
						attemptStatuses[k] = map[string]bool{}
					}
					attemptStatuses[k][status] = true
					if len(attemptStatuses[k]) == 2 {
						seen["one attempt reported failing and succeeding"]++
					}
				} else {
					seen["attempt without a deployment id"]++
				}
				if status == "success" {
					k := p + "/" + e["environment"].(string) + "/" + e["commit_id"].(string)
					if deployed[k]++; deployed[k] == 2 {
						seen["a commit deployed again"]++
					}
				}
			case "incident_status_change":
				id := fmt.Sprint(e["incident_id"])
				incidentEvents[id] = append(incidentEvents[id], e)
			}
		}
		for _, events := range incidentEvents {
			var opened, resolved int
			for _, e := range events {
				if e["status"] == "failure" {
					opened++
				} else {
					resolved++
				}
				switch c, _ := e["commit_id"].(string); {
				case e["deployment_id"] == "run-999999":
					seen["cause: a deployment id no deployment has"]++
				case e["deployment_id"] != nil:
					seen["cause: deployment id"]++
				case c == strings.Repeat("0f", 20):
					seen["cause: an unknown SHA"]++
				case len(c) == 40:
					seen["cause: full SHA"]++
				case c != "":
					seen["cause: a prefix two commits share"]++
				}
			}
			switch {
			case opened == 0:
				seen["incident known only by its resolution"]++
			case resolved == 0:
				seen["incident never resolved"]++
			case opened >= 2 && resolved >= 2:
				seen["incident reopened"]++
			case opened >= 2:
				seen["incident alerted twice"]++
			}
		}
		for _, w := range h.Webhooks {
			var body struct {
				Repository struct {
					FullName string `json:"full_name"`
				} `json:"repository"`
				Commits []struct {
					ID string `json:"id"`
				} `json:"commits"`
				DeploymentStatus struct {
					State string `json:"state"`
				} `json:"deployment_status"`
			}
			require.NoError(t, json.Unmarshal(w.Events[0], &body))
			seen["GitHub "+w.Name]++
			if w.ID == "" {
				seen["GitHub delivery without an id"]++
			}
			if s := body.DeploymentStatus.State; s != "" {
				seen["GitHub deployment "+s]++
			}
			for _, c := range body.Commits {
				if shaPipelines[c.ID] == nil {
					shaPipelines[c.ID] = map[string]bool{}
				}
				shaPipelines[c.ID][body.Repository.FullName] = true
				if len(shaPipelines[c.ID]) == 2 {
					seen["one SHA in two pipelines"]++
				}
			}
			if len(body.Commits) >= 2 {
				seen["GitHub push of several commits"]++
			}
		}
		copies := map[string]int{}
		ids := map[string]int{}
		for _, d := range h.Deliveries {
			if d.Mode == GitHub {
				if d.ID != "" {
					if ids[d.ID]++; ids[d.ID] == 2 {
						seen["GitHub redelivery"]++
					}
				}
				if copies[string(d.Events[0])]++; copies[string(d.Events[0])] == 2 && ids[d.ID] == 1 {
					seen["GitHub body again under another delivery id"]++
				}
				continue
			}
			switch d.Mode {
			case PostNDJSON:
				seen["NDJSON delivery"]++
			case Publish:
				seen["straight onto the stream"]++
			default:
				seen["JSON delivery"]++
			}
			for _, e := range d.Events {
				if copies[string(e)]++; copies[string(e)] == 2 {
					seen["the same bytes delivered twice"]++
				}
			}
		}
		var delivered int
		for _, d := range h.Deliveries {
			delivered += len(d.Events)
		}
		if delivered > len(h.Events)+seen["the same bytes delivered twice"] {
			seen["an event delivered again, written otherwise"]++
		}
		if len(h.Environments) > 2 {
			seen["three environments"]++
		}
	}
	for _, shape := range []string{
		"client id", "no client id", "one client id in two pipelines", "RFC 3339 in UTC", "RFC 3339 with an offset",
		"epoch seconds", "fractional seconds", "one SHA in two pipelines", "multi-commit deployment",
		"head listed in commits", "a commit listed twice", "status left to its default", "failed attempt",
		"deployment id as a number", "one attempt reported failing and succeeding", "attempt without a deployment id",
		"a commit deployed again", "cause: deployment id", "cause: a deployment id no deployment has",
		"cause: an unknown SHA", "cause: full SHA", "cause: a prefix two commits share",
		"incident known only by its resolution", "incident never resolved", "incident reopened", "incident alerted twice",
		"NDJSON delivery", "straight onto the stream", "JSON delivery", "the same bytes delivered twice",
		"an event delivered again, written otherwise",
		"GitHub push", "GitHub push of several commits", "GitHub deployment_status", "GitHub deployment success",
		"GitHub deployment failure", "GitHub deployment error", "GitHub deployment in_progress", "GitHub redelivery",
		"GitHub body again under another delivery id", "GitHub delivery without an id",
	} {
		require.Positive(t, seen[shape], "seeds 1 to %d have no %q", makeTestSeeds, shape)
	}
	t.Logf("%v", seen)
}

// The reference reads the deliveries (duplicates, re-rendered copies) as the distinct events.
func TestDeliveriesAreTheEvents(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 10; seed++ {
		h := Generate(seed, nil)
		events, delivered := oracle.New(), oracle.New()
		for _, e := range h.Events {
			require.NoError(t, events.AddNative(e))
		}
		for _, d := range h.Deliveries {
			for _, e := range d.Events {
				if d.Mode == GitHub {
					require.NoError(t, delivered.AddGitHub(d.Name, e))
				} else {
					require.NoError(t, delivered.AddNative(e))
				}
			}
		}
		for _, w := range h.Webhooks {
			require.NoError(t, events.AddGitHub(w.Name, w.Events[0]))
		}
		for _, q := range h.Queries {
			oq := oracle.Query{Pipeline: q.Pipeline, Environment: "production", From: q.From, To: q.To, Interval: q.Interval, Benchmark: q.Benchmark}
			want, err := events.Report(oq)
			require.NoError(t, err)
			got, err := delivered.Report(oq)
			require.NoError(t, err)
			require.Equal(t, want, got, "seed %d", seed)
		}
	}
}
