// Package githubimport imports a repository's past from GitHub's REST API (`devopstic import
// github`): its pull requests with their commits and reviews, its deployments with their
// statuses (or the runs of the deploy workflows), and its issues labelled as incidents.
//
// The REST objects have the shapes of the webhooks' (a pull request, a deployment, an issue), so
// the importer wraps them in webhook-shaped deliveries and maps them with the webhooks' own code
// (pkg/github): the same pull request, deployment or incident seen live and imported is the same
// fact, keyed the same way, and nothing is counted twice. The deliveries go through the stream
// like live ones, marked as imported.
//
// The walk is resumable: after each page it sends, it writes a checkpoint (the list and the
// page it is at) to a file, so that a run stopped by Ctrl-C, a refusal or a long rate limit goes
// on where it stopped. Resuming repeats at most one page, which the stream and the tables take
// once.
package githubimport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/importer"
	"github.com/devopstic/devopstic/pkg/stream"
)

// ErrInvalid marks a bad option.
var ErrInvalid = errors.New("invalid import option")

// Options are an import's.
type Options struct {
	// Repo is owner/name.
	Repo string
	// Since: what happened before is left out (the zero time: nothing is).
	Since time.Time
	// GitHub are the mapping options, as the ingest has them (DEVOPSTIC_GITHUB_*), with the
	// pipeline (--pipeline) in PipelineID.
	GitHub github.Options
	// PerPage is the page size asked for (GitHub's most is 100).
	PerPage int
	// Checkpoint is the file that keeps the walk's place; "" keeps none (a dry run).
	Checkpoint string
	// Restart drops an unfinished import's checkpoint instead of resuming it.
	Restart bool
}

// Counts are what an import has read and sent.
type Counts struct {
	PullRequests int `json:"pull_requests"`
	Commits      int `json:"commits"`
	Reviews      int `json:"reviews"`
	Deployments  int `json:"deployments"`
	Statuses     int `json:"deployment_statuses"`
	Runs         int `json:"workflow_runs"`
	Incidents    int `json:"incidents"`
	// Sent are the deliveries sent; Skipped those that carry no fact (github.ErrIgnored) or
	// could not be mapped.
	Sent    int `json:"sent"`
	Skipped int `json:"skipped"`
}

func (c Counts) String() string {
	return fmt.Sprintf("%d pull requests (%d commits, %d reviews), %d deployments (%d statuses), %d workflow runs, %d incidents: %d deliveries",
		c.PullRequests, c.Commits, c.Reviews, c.Deployments, c.Statuses, c.Runs, c.Incidents, c.Sent)
}

// Result is what an import did.
type Result struct {
	Counts
	// Resumed says the run went on from an unfinished one's checkpoint.
	Resumed bool
	Since   time.Time
	// Warnings are the deliveries that could not be mapped, and why.
	Warnings []string
}

// checkpoint is where a walk is: the phase, and the page of it to read next. Counts are the
// whole import's so far.
type checkpoint struct {
	Repository string    `json:"repository"`
	Since      time.Time `json:"since"`
	Phase      string    `json:"phase"`
	Next       string    `json:"next"`
	Counts     Counts    `json:"counts"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// CheckpointPath is where the checkpoint of repo's import is kept under dir.
func CheckpointPath(dir, repo string) string {
	return filepath.Join(dir, "imports", "github", filepath.FromSlash(repo)+".json")
}

var repoName = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)

// run is one import under way.
type run struct {
	opts     Options
	client   *Client
	sink     importer.Sink
	progress *importer.Progress
	now      func() time.Time
	repo     repository
	res      Result
}

// phase is one list walked: its first page, how to read a page's items and how old an item is
// (for --since on the lists GitHub cannot filter), and the deliveries of an item.
type phase struct {
	name  string
	first string
	items func(body []byte) ([]object, error)
	// age is the item's time by which the list is sorted, newest first; nil when GitHub
	// filters by --since itself.
	age     func(object) time.Time
	deliver func(ctx context.Context, item object) ([]Delivery, error)
}

// Import walks the repository's history on GitHub and sends it to sink, resuming an unfinished
// import of the same repository unless opts.Restart. now stamps the messages' receive time.
func Import(ctx context.Context, opts Options, client *Client, sink importer.Sink, progress *importer.Progress, now func() time.Time) (Result, error) {
	if !repoName.MatchString(opts.Repo) {
		return Result{}, fmt.Errorf("%w: the repository must be owner/name, not %q", ErrInvalid, opts.Repo)
	}
	opts.PerPage = min(max(opts.PerPage, 1), 100)
	r := &run{opts: opts, client: client, sink: sink, progress: progress, now: now}
	r.res.Since = opts.Since

	page, err := client.Get(ctx, "/repos/"+opts.Repo)
	if err != nil {
		return r.res, fmt.Errorf("repository %s: %w", opts.Repo, err)
	}
	if err := json.Unmarshal(page.Body, &r.repo); err != nil || r.repo.FullName == "" {
		return r.res, fmt.Errorf("repository %s: GitHub's answer has no full_name", opts.Repo)
	}
	r.repo.pipeline = opts.GitHub.PipelineID

	cp := checkpoint{Repository: r.repo.FullName, Since: opts.Since}
	if opts.Checkpoint != "" && !opts.Restart {
		saved, found, err := loadCheckpoint(opts.Checkpoint)
		if err != nil {
			return r.res, err
		}
		if found && strings.EqualFold(saved.Repository, r.repo.FullName) {
			cp, r.res.Resumed, r.res.Since = saved, true, saved.Since
			r.opts.Since = saved.Since
			r.res.Counts = saved.Counts
		}
	}
	phases := r.phases()
	start := slices.IndexFunc(phases, func(p phase) bool { return p.name == cp.Phase })
	if start < 0 {
		start, cp.Next = 0, ""
	}
	for i := start; i < len(phases); i++ {
		then := "done"
		if i+1 < len(phases) {
			then = phases[i+1].name
		}
		if err := r.walk(ctx, phases[i], then, i, len(phases), &cp); err != nil {
			return r.res, err
		}
	}
	if opts.Checkpoint != "" {
		if err := os.Remove(opts.Checkpoint); err != nil && !errors.Is(err, os.ErrNotExist) {
			return r.res, fmt.Errorf("remove the finished import's checkpoint: %w", err)
		}
	}
	progress.Show(r.res.Counts.String(), 1, true)
	return r.res, nil
}

func (r *run) list(path string, query url.Values) string {
	query.Set("per_page", strconv.Itoa(r.opts.PerPage))
	return "/repos/" + r.repo.FullName + path + "?" + query.Encode()
}

func (r *run) phases() []phase {
	array := func(body []byte) ([]object, error) {
		var items []object
		err := json.Unmarshal(body, &items)
		return items, err
	}
	since := url.Values{}
	if !r.opts.Since.IsZero() {
		since.Set("since", r.opts.Since.UTC().Format(time.RFC3339))
	}
	label := r.opts.GitHub.IncidentLabel
	if label == "" {
		label = "incident"
	}
	issues := url.Values{"state": {"all"}, "labels": {label}, "sort": {"created"}, "direction": {"desc"}}
	for k, v := range since {
		issues[k] = v
	}
	ps := []phase{
		{name: "pulls", first: r.list("/pulls", url.Values{"state": {"all"}, "sort": {"updated"}, "direction": {"desc"}}),
			items: array, age: func(o object) time.Time { return o.time("updated_at") }, deliver: r.pullRequest},
		{name: "deployments", first: r.list("/deployments", url.Values{}),
			items: array, age: func(o object) time.Time { return o.time("created_at") }, deliver: r.deployment},
		{name: "issues", first: r.list("/issues", issues), items: array, deliver: r.issue},
	}
	if len(r.opts.GitHub.DeployWorkflows) > 0 {
		runs := url.Values{"status": {"completed"}}
		if !r.opts.Since.IsZero() {
			runs.Set("created", ">="+r.opts.Since.UTC().Format(time.RFC3339))
		}
		ps = append(ps, phase{name: "runs", first: r.list("/actions/runs", runs), items: func(body []byte) ([]object, error) {
			var page struct {
				Runs []object `json:"workflow_runs"`
			}
			err := json.Unmarshal(body, &page)
			return page.Runs, err
		}, deliver: r.workflowRun})
	}
	return ps
}

// walk reads a phase's pages from cp.Next (its first page when ""), sending each page's
// deliveries and then saving the checkpoint: at the next page, or after the last one at the
// start of the phase named then.
func (r *run) walk(ctx context.Context, p phase, then string, index, phases int, cp *checkpoint) error {
	next := cp.Next
	if next == "" {
		next = p.first
	}
	cp.Phase = p.name
	for next != "" {
		page, err := r.client.Get(ctx, next)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", p.name, r.repo.FullName, err)
		}
		items, err := p.items(page.Body)
		if err != nil {
			return fmt.Errorf("%s of %s: GitHub's answer is not a list: %w", p.name, r.repo.FullName, err)
		}
		var (
			msgs    []stream.Message
			oldest  time.Time
			tooOld  bool
			receive = r.now().UTC()
		)
		for _, item := range items {
			if p.age != nil && !r.opts.Since.IsZero() {
				if oldest = p.age(item); oldest.Before(r.opts.Since) {
					tooOld = true // the list is newest first: the rest is older still
					break
				}
			}
			ds, err := p.deliver(ctx, item)
			if err != nil {
				return err
			}
			for _, d := range ds {
				msg, err := Message(d, r.opts.GitHub, receive)
				if err != nil {
					r.res.Skipped++
					if !ignored(err) {
						r.res.Warnings = append(r.res.Warnings, err.Error())
					}
					continue
				}
				msgs = append(msgs, msg)
			}
		}
		if err := r.sink.Send(ctx, msgs); err != nil {
			return err
		}
		r.res.Sent += len(msgs)
		next = page.Next
		if tooOld {
			next = ""
		}
		cp.Next, cp.Counts, cp.UpdatedAt = next, r.res.Counts, r.now().UTC()
		if next == "" {
			cp.Phase = then
		}
		if r.opts.Checkpoint != "" {
			if err := saveCheckpoint(r.opts.Checkpoint, *cp); err != nil {
				return err
			}
		}
		r.progress.Show(r.res.Counts.String(), (float64(index)+r.fraction(page, oldest, next == ""))/float64(phases), false)
	}
	return nil
}

// fraction guesses how much of a phase is done: by the time the walk has gone back to, out of
// the window, when the list is sorted by time and --since bounds it; else by page numbers.
func (r *run) fraction(page Page, oldest time.Time, done bool) float64 {
	if done {
		return 1
	}
	if !oldest.IsZero() && !r.opts.Since.IsZero() {
		now := r.now()
		return min(max(now.Sub(oldest).Seconds()/max(now.Sub(r.opts.Since).Seconds(), 1), 0), 1)
	}
	current, last := pageNumber(page.Next)-1, pageNumber(page.Last)
	if current > 0 && last > 0 {
		return min(float64(current)/float64(last), 1)
	}
	return 0
}

func pageNumber(link string) int {
	u, err := url.Parse(link)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(u.Query().Get("page"))
	return n
}

// all reads every page of a list (a pull request's commits or reviews, a deployment's statuses).
func (r *run) all(ctx context.Context, path string) ([]object, error) {
	var out []object
	for next := r.list(path, url.Values{}); next != ""; {
		page, err := r.client.Get(ctx, next)
		if err != nil {
			return nil, err
		}
		var items []object
		if err := json.Unmarshal(page.Body, &items); err != nil {
			return nil, fmt.Errorf("GET %s: the answer is not a list: %w", path, err)
		}
		out = append(out, items...)
		next = page.Next
	}
	return out, nil
}

func (r *run) pullRequest(ctx context.Context, pr object) ([]Delivery, error) {
	r.res.PullRequests++
	number := pr.number("number")
	if pr.str("state") == "closed" && pr.str("merged_at") == "" {
		return PullRequest(r.repo, pr, nil, nil), nil // abandoned: its commits ship nothing
	}
	commits, err := r.all(ctx, "/pulls/"+number+"/commits")
	if err != nil {
		return nil, fmt.Errorf("commits of pull request #%s: %w", number, err)
	}
	reviews, err := r.all(ctx, "/pulls/"+number+"/reviews")
	if err != nil {
		return nil, fmt.Errorf("reviews of pull request #%s: %w", number, err)
	}
	r.res.Commits += len(commits)
	r.res.Reviews += len(reviews)
	return PullRequest(r.repo, pr, commits, reviews), nil
}

func (r *run) deployment(ctx context.Context, d object) ([]Delivery, error) {
	r.res.Deployments++
	id := d.number("id")
	statuses, err := r.all(ctx, "/deployments/"+id+"/statuses")
	if err != nil {
		return nil, fmt.Errorf("statuses of deployment %s: %w", id, err)
	}
	r.res.Statuses += len(statuses)
	out := make([]Delivery, 0, len(statuses))
	for _, s := range statuses {
		out = append(out, DeploymentStatus(r.repo, d, s))
	}
	return out, nil
}

func (r *run) issue(_ context.Context, issue object) ([]Delivery, error) {
	if _, isPull := issue["pull_request"]; isPull {
		return nil, nil // the issues list holds the pull requests too
	}
	r.res.Incidents++
	return []Delivery{Issue(r.repo, issue)}, nil
}

func (r *run) workflowRun(_ context.Context, run object) ([]Delivery, error) {
	r.res.Runs++
	return []Delivery{WorkflowRun(r.repo, run)}, nil
}

func loadCheckpoint(path string) (checkpoint, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("read the import's checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return checkpoint{}, false, fmt.Errorf("the import's checkpoint %s is damaged (delete it, or run with --restart): %w", path, err)
	}
	return cp, true, nil
}

// saveCheckpoint writes cp whole or not at all: to a file beside it, renamed over it.
func saveCheckpoint(path string, cp checkpoint) error {
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the import's checkpoint: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save the import's checkpoint: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save the import's checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save the import's checkpoint: %w", err)
	}
	return nil
}
