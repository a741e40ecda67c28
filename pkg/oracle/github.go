package oracle

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// GitHubSource is the source of GitHub deliveries.
const GitHubSource = "github"

// githubPayload holds what DORA.md's facts need of the GitHub events it names.
type githubPayload struct {
	Action     string `json:"action"`
	Deleted    bool   `json:"deleted"`
	After      string `json:"after"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	HeadCommit *struct {
		ID string `json:"id"`
	} `json:"head_commit"`
	Commits []struct {
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
	} `json:"commits"`
	PullRequest *struct {
		CreatedAt      string `json:"created_at"`
		MergedAt       string `json:"merged_at"`
		Merged         bool   `json:"merged"`
		MergeCommitSHA string `json:"merge_commit_sha"`
		Head           struct {
			SHA string `json:"sha"`
		} `json:"head"`
	} `json:"pull_request"`
	Review *struct {
		State       string `json:"state"`
		SubmittedAt string `json:"submitted_at"`
		CommitID    string `json:"commit_id"`
	} `json:"review"`
	Deployment *struct {
		ID          json.Number `json:"id"`
		SHA         string      `json:"sha"`
		Environment string      `json:"environment"`
	} `json:"deployment"`
	DeploymentStatus *struct {
		State     string `json:"state"`
		CreatedAt string `json:"created_at"`
	} `json:"deployment_status"`
}

// AddGitHub records one GitHub delivery (its X-GitHub-Event and body), any number of times, as
// DORA.md's facts: a push's commits with their timestamps, shipped by a deployment of the push's
// head; a pull request opened (its head submitted), approved by a review, merged (its head and
// merge commit one change, approved at the merge when no review approved it); a
// deployment_status in a final state (failure and error are failures), one attempt per
// deployment. The pipeline is the repository's full name. Other deliveries say nothing.
func (h *History) AddGitHub(event string, body []byte) error {
	var p githubPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("oracle: GitHub %s: %w", event, err)
	}
	pipeline := p.Repository.FullName
	at := func(field, s string) (time.Time, error) {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("oracle: GitHub %s %s: %w", event, field, err)
		}
		return t.UTC(), nil
	}
	switch event {
	case "push":
		if p.Deleted || len(p.Commits) == 0 {
			return nil
		}
		head := p.After
		if p.HeadCommit != nil && p.HeadCommit.ID != "" {
			head = p.HeadCommit.ID
		}
		var ids []string
		for _, c := range p.Commits {
			t, err := at("commits[].timestamp", c.Timestamp)
			if err != nil {
				return err
			}
			h.AddChangeTimes(ChangeTimes{Pipeline: pipeline, Commit: c.ID, Committed: t})
			ids = append(ids, c.ID)
		}
		h.Push(pipeline, head, ids)
	case "pull_request":
		pr := p.PullRequest
		if pr == nil {
			return fmt.Errorf("oracle: GitHub pull_request without pull_request")
		}
		switch p.Action {
		case "opened", "reopened", "ready_for_review":
		case "closed":
			if !pr.Merged {
				return nil
			}
		default:
			return nil
		}
		created, err := at("pull_request.created_at", pr.CreatedAt)
		if err != nil {
			return err
		}
		h.AddChangeTimes(ChangeTimes{Pipeline: pipeline, Commit: pr.Head.SHA, Submitted: created})
		if p.Action == "closed" {
			merged, err := at("pull_request.merged_at", pr.MergedAt)
			if err != nil {
				return err
			}
			h.AddChangeTimes(ChangeTimes{Pipeline: pipeline, Commit: pr.Head.SHA, MergedUnapproved: merged})
			h.Link(pipeline, pr.Head.SHA, pr.MergeCommitSHA)
		}
	case "pull_request_review":
		r := p.Review
		if p.Action != "submitted" || r == nil || !strings.EqualFold(r.State, "approved") {
			return nil
		}
		commit := r.CommitID
		if commit == "" && p.PullRequest != nil {
			commit = p.PullRequest.Head.SHA
		}
		t, err := at("review.submitted_at", r.SubmittedAt)
		if err != nil {
			return err
		}
		h.AddChangeTimes(ChangeTimes{Pipeline: pipeline, Commit: commit, Approved: t})
	case "deployment_status":
		if p.Deployment == nil || p.DeploymentStatus == nil {
			return fmt.Errorf("oracle: GitHub deployment_status without deployment or deployment_status")
		}
		var status string
		switch strings.ToLower(p.DeploymentStatus.State) {
		case "success":
			status = Success
		case "failure", "error":
			status = Failure
		default:
			return nil // not final: no deployment yet
		}
		t, err := at("deployment_status.created_at", p.DeploymentStatus.CreatedAt)
		if err != nil {
			return err
		}
		id := p.Deployment.ID.String()
		return h.AddDeployReport(DeployReport{
			Source: GitHubSource, Pipeline: pipeline, Environment: p.Deployment.Environment,
			Key: id, DeploymentID: id, At: t, Status: status, Ships: []string{p.Deployment.SHA},
		})
	}
	return nil
}
