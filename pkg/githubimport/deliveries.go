package githubimport

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/importer"
	"github.com/devopstic/devopstic/pkg/stream"
)

// Importer names this importer in the stream messages' importer.HeaderImported.
const Importer = "github"

// Delivery is a webhook-shaped delivery made of REST objects: the event GitHub would have sent
// (X-GitHub-Event), its body, and a stable id.
type Delivery struct {
	Event string
	// ID names what the delivery says (a pull request in a state, a review, a deployment
	// status, an issue in a state), so that importing the same history again makes the same
	// ids, and a changed object (a pull request merged since) a new one.
	ID   string
	Body []byte
}

// repository is what a delivery says of its repository: only its name is read.
type repository struct {
	ID       int64  `json:"id,omitempty"`
	Name     string `json:"name"`
	FullName string `json:"full_name"`
	HTMLURL  string `json:"html_url,omitempty"`
	// pipeline is the pipeline imported into, part of every id: the same repository imported
	// into two pipelines is two histories.
	pipeline string
}

// object is a REST object read loosely: its fields kept as they came.
type object map[string]json.RawMessage

func (o object) str(name string) string {
	var s string
	_ = json.Unmarshal(o[name], &s) // absent or not a string: ""
	return s
}

func (o object) number(name string) string {
	var n json.Number
	if err := json.Unmarshal(o[name], &n); err != nil {
		return ""
	}
	return n.String()
}

func (o object) sub(name string) object {
	var sub object
	_ = json.Unmarshal(o[name], &sub)
	return sub
}

func (o object) time(name string) time.Time {
	t, _ := time.Parse(time.RFC3339, o.str(name)) // absent: the zero time
	return t
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("githubimport: marshal a delivery: %v", err)) // maps of raw JSON always marshal
	}
	return b
}

func (r repository) id(parts ...string) string {
	return "import:" + cmp.Or(r.pipeline, r.FullName) + ":" + strings.Join(parts, ":")
}

// PullRequest makes the deliveries of a pull request: a push of its commits (their committer
// times, the head last), the pull request itself (closed when it is, else opened: merged_at
// tells a merge) and its reviews. A pull request closed without a merge brings only itself.
func PullRequest(repo repository, pr object, commits, reviews []object) []Delivery {
	number, head := pr.number("number"), pr.sub("head").str("sha")
	action := "opened"
	if pr.str("state") == "closed" {
		action = "closed"
	}
	merged := pr.str("merged_at") != ""
	withMerged := object{}
	for k, v := range pr {
		withMerged[k] = v
	}
	withMerged["merged"] = json.RawMessage(fmt.Sprint(merged)) // the list endpoint does not say it
	var out []Delivery
	if len(commits) > 0 && (action == "opened" || merged) {
		type commit struct {
			ID        string `json:"id"`
			Timestamp string `json:"timestamp"`
		}
		var cs []commit
		for _, c := range commits {
			cs = append(cs, commit{ID: c.str("sha"), Timestamp: c.sub("commit").sub("committer").str("date")})
		}
		// The head last, as GitHub lists a push's commits.
		if i := slices.IndexFunc(cs, func(c commit) bool { return c.ID == head }); i >= 0 && i != len(cs)-1 {
			cs = append(append(cs[:i:i], cs[i+1:]...), cs[i])
		}
		out = append(out, Delivery{Event: "push", ID: repo.id("pull", number, "push", head), Body: marshal(map[string]any{
			"ref": "refs/heads/" + pr.sub("head").str("ref"), "after": head, "head_commit": cs[len(cs)-1],
			"commits": cs, "repository": repo,
		})})
	}
	out = append(out, Delivery{Event: "pull_request", ID: repo.id("pull", number, action, head, fmt.Sprint(merged)), Body: marshal(map[string]any{
		"action": action, "number": pr["number"], "pull_request": withMerged, "repository": repo,
	})})
	if action == "closed" && !merged {
		return out
	}
	for _, r := range reviews {
		out = append(out, Delivery{Event: "pull_request_review", ID: repo.id("review", r.number("id")), Body: marshal(map[string]any{
			"action": "submitted", "review": r, "pull_request": pr, "repository": repo,
		})})
	}
	return out
}

// DeploymentStatus makes the delivery of one status of a deployment.
func DeploymentStatus(repo repository, deployment, status object) Delivery {
	return Delivery{Event: "deployment_status", ID: repo.id("deployment_status", status.number("id")), Body: marshal(map[string]any{
		"action": "created", "deployment_status": status, "deployment": deployment, "repository": repo,
	})}
}

// Issue makes the delivery of an issue in its present state: closed (when it resolved), else
// opened.
func Issue(repo repository, issue object) Delivery {
	action := "opened"
	if issue.str("state") == "closed" {
		action = "closed"
	}
	return Delivery{Event: "issues", ID: repo.id("issue", issue.number("number"), action, issue.str("closed_at")), Body: marshal(map[string]any{
		"action": action, "issue": issue, "repository": repo,
	})}
}

// WorkflowRun makes the delivery of a completed workflow run.
func WorkflowRun(repo repository, run object) Delivery {
	attempt := run.number("run_attempt")
	return Delivery{Event: "workflow_run", ID: repo.id("run", run.number("id"), attempt), Body: marshal(map[string]any{
		"action": "completed", "workflow_run": run,
		"workflow": map[string]string{"name": run.str("name"), "path": run.str("path")}, "repository": repo,
	})}
}

// Message maps d with the webhook's own code (github.Parse, with opts as the ingest would) and
// makes its stream message: what the writer maps again. A delivery DevOpstic does not use (a
// commented review, a deployment still in progress) is github.ErrIgnored; one it cannot map is
// github.ErrInvalid. Neither is sent.
func Message(d Delivery, opts github.Options, receivedAt time.Time) (stream.Message, error) {
	mapped, err := github.Parse(d.Event, d.Body, opts)
	if err != nil {
		return stream.Message{}, fmt.Errorf("%s %s: %w", d.Event, d.ID, err)
	}
	optsJSON, err := json.Marshal(opts)
	if err != nil {
		return stream.Message{}, fmt.Errorf("encode the options: %w", err)
	}
	return stream.Message{
		Subject:    stream.Subject(github.Source, mapped.Set.Event.Kind),
		ID:         "github:" + d.ID,
		Data:       d.Body,
		ReceivedAt: receivedAt,
		Header: nats.Header{
			github.HeaderEvent:      {d.Event},
			github.HeaderDelivery:   {d.ID},
			github.HeaderOptions:    {string(optsJSON)},
			importer.HeaderImported: {Importer},
		},
	}, nil
}

// ignored tells a delivery left out on purpose from one that could not be mapped.
func ignored(err error) bool { return errors.Is(err, github.ErrIgnored) }
