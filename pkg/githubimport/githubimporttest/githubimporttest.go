// Package githubimporttest is the GitHub of the tests of `devopstic import github`: an httptest
// server answering the REST endpoints the importer reads, as GitHub does (pagination with Link
// headers, rate limits, failures on demand), from REST objects copied from GitHub's own examples
// (testdata/SOURCES.md); and the same story as the webhook deliveries GitHub would have sent
// live, written apart from the importer's code so that comparing the two checks it.
package githubimporttest

import (
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

//go:embed testdata/*.json
var templates embed.FS

// Repo is the story's repository.
const Repo = "octo/api"

// T is the story's base time, a Monday; its figures are asked for the week from it.
var T = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// At is h hours after T, as GitHub writes times.
func At(h float64) string {
	return T.Add(time.Duration(h * float64(time.Hour))).Format(time.RFC3339)
}

// The story's commits.
const (
	A1 = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	H1 = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1"
	M1 = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"
	H2 = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
	M2 = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2"
	H3 = "b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3"
	H4 = "b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4"
)

// The story, hours after T:
//
//	#1: commits a1 (1) and h1 (2), opened at 3, a comment review at 3.5, approved at 4, merged
//	    at 5 as m1
//	#2: commit h2 (6), opened at 7, merged at 9 as m2 (no review)
//	#3: commit h3 (10), opened at 11, still open
//	#4: commit h4, opened at 12, closed at 12.5 without a merge
//	deployment 101 of m1 to production: in progress at 6, success at 6.5
//	deployment 102 of m2: failure at 10.5; deployment 103 of m2: success at 12
//	issue #50 (incident): opened at 10.75, "root cause: 102", closed at 11.75
//	issue #51 (incident): opened at 13, still open
type pull struct {
	number           int
	head, merge, ref string
	commits          [][2]string // sha, committer time
	created, updated float64
	closed, merged   float64 // 0: not
	reviews          []review
	open             bool
}

type review struct {
	id    int
	state string
	at    float64
}

var pulls = []pull{ // sorted by update, newest first, as the list is asked for
	{number: 4, head: H4, ref: "try-4", commits: [][2]string{{H4, At(11.5)}}, created: 12, updated: 12.5, closed: 12.5},
	{number: 3, head: H3, ref: "feature-3", commits: [][2]string{{H3, At(10)}}, created: 11, updated: 11, open: true},
	{number: 2, head: H2, merge: M2, ref: "feature-2", commits: [][2]string{{H2, At(6)}}, created: 7, updated: 9, closed: 9, merged: 9},
	{number: 1, head: H1, merge: M1, ref: "feature-1", commits: [][2]string{{A1, At(1)}, {H1, At(2)}}, created: 3, updated: 5, closed: 5, merged: 5,
		reviews: []review{{901, "COMMENTED", 3.5}, {902, "APPROVED", 4}}},
}

type deployment struct {
	id       int
	sha      string
	created  float64
	statuses []status
}

type status struct {
	id    int
	state string
	at    float64
}

var deployments = []deployment{ // newest first, as GitHub lists them
	{id: 103, sha: M2, created: 11, statuses: []status{{1004, "success", 12}}},
	{id: 102, sha: M2, created: 10, statuses: []status{{1003, "failure", 10.5}}},
	{id: 101, sha: M1, created: 6, statuses: []status{{1002, "success", 6.5}, {1001, "in_progress", 6}}},
}

type issue struct {
	number          int
	created, closed float64
	body            string
}

var issues = []issue{ // by creation, newest first
	{number: 51, created: 13, body: "Pages are slow."},
	{number: 50, created: 10.75, closed: 11.75, body: "Checkout is down.\n\nroot cause: 102\n"},
}

// Fault is an answer given instead of the real one.
type Fault struct {
	Status int
	Header map[string]string
	Body   string
}

// Server is the test GitHub.
type Server struct {
	*httptest.Server
	t testing.TB

	mu       sync.Mutex
	faults   map[string][]Fault
	requests map[string]int
	// Token, when set, is the only one accepted (401 otherwise).
	Token string
	// Before is called before each request is answered (nil: nothing).
	Before func(r *http.Request)
	// Runs are the workflow runs /actions/runs answers (the story deploys with deployments:
	// none unless a test sets them).
	Runs []map[string]any
}

// NewServer starts the test GitHub; it stops with the test.
func NewServer(t testing.TB) *Server {
	s := &Server{t: t, faults: map[string][]Fault{}, requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Fail makes the next requests of path (such as /repos/octo/api/pulls) answer faults, in order.
func (s *Server) Fail(path string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = append(s.faults[path], faults...)
}

// Requests counts the requests of path answered so far, faults included.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.Before != nil {
		s.Before(r)
	}
	s.mu.Lock()
	s.requests[r.URL.Path]++
	var fault *Fault
	if fs := s.faults[r.URL.Path]; len(fs) > 0 {
		fault, s.faults[r.URL.Path] = &fs[0], fs[1:]
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if fault != nil {
		for k, v := range fault.Header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(fault.Status)
		fmt.Fprint(w, fault.Body)
		return
	}
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`)
		return
	}
	if r.URL.Path == "/repos/"+Repo+"/actions/runs" {
		runs := s.Runs
		if runs == nil {
			runs = []map[string]any{}
		}
		s.write(w, map[string]any{"total_count": len(runs), "workflow_runs": runs})
		return
	}
	items, ok := s.route(r)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`)
		return
	}
	if items == nil { // the repository: one object
		s.write(w, map[string]any{"id": 1296269, "name": "api", "full_name": Repo, "html_url": "https://github.com/" + Repo, "default_branch": "main"})
		return
	}
	s.paginate(w, r, items)
}

// paginate answers a page of items as GitHub does: per_page and page, and a Link header.
func (s *Server) paginate(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	last := max((len(items)+perPage-1)/perPage, 1)
	link := func(p int) string {
		q.Set("page", strconv.Itoa(p))
		return fmt.Sprintf("<%s%s?%s>", s.URL, r.URL.Path, q.Encode())
	}
	var rels []string
	if page < last {
		rels = append(rels, link(page+1)+`; rel="next"`, link(last)+`; rel="last"`)
	}
	if page > 1 {
		rels = append(rels, link(1)+`; rel="first"`, link(page-1)+`; rel="prev"`)
	}
	if len(rels) > 0 {
		w.Header().Set("Link", strings.Join(rels, ", "))
	}
	from, to := min((page-1)*perPage, len(items)), min(page*perPage, len(items))
	s.write(w, items[from:to])
}

func (s *Server) write(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	require.NoError(s.t, err)
	_, _ = w.Write(b)
}

// route finds what a path lists; nil items (and ok) for the repository itself.
func (s *Server) route(r *http.Request) (items []any, ok bool) {
	rest, found := strings.CutPrefix(r.URL.Path, "/repos/"+Repo)
	if !found {
		return nil, false
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case rest == "":
		return nil, true
	case rest == "/pulls":
		for _, p := range pulls {
			items = append(items, s.pull(p))
		}
	case len(parts) == 3 && parts[0] == "pulls" && parts[2] == "commits":
		p, found := findPull(parts[1])
		if !found {
			return nil, false
		}
		for _, c := range p.commits {
			items = append(items, s.commit(c[0], c[1]))
		}
	case len(parts) == 3 && parts[0] == "pulls" && parts[2] == "reviews":
		p, found := findPull(parts[1])
		if !found {
			return nil, false
		}
		for _, rv := range p.reviews {
			items = append(items, s.review(p, rv))
		}
	case rest == "/deployments":
		for _, d := range deployments {
			items = append(items, s.deployment(d))
		}
	case len(parts) == 3 && parts[0] == "deployments" && parts[2] == "statuses":
		for _, d := range deployments {
			if strconv.Itoa(d.id) == parts[1] {
				for _, st := range d.statuses {
					items = append(items, s.status(d, st))
				}
			}
		}
	case rest == "/issues":
		since, _ := time.Parse(time.RFC3339, r.URL.Query().Get("since"))
		for _, i := range issues {
			updated := i.created
			if i.closed > 0 {
				updated = i.closed
			}
			if strings.EqualFold(r.URL.Query().Get("labels"), "incident") && !T.Add(time.Duration(updated*float64(time.Hour))).Before(since) {
				items = append(items, s.issue(i))
			}
		}
		// GitHub lists pull requests among the issues: the importer must leave them out.
		items = append(items, map[string]any{"number": 4, "state": "closed", "created_at": At(12), "labels": []any{map[string]any{"name": "incident"}},
			"pull_request": map[string]any{"url": "https://api.github.com/repos/octo/api/pulls/4"}})
	default:
		return nil, false
	}
	return append([]any{}, items...), true
}

func findPull(number string) (pull, bool) {
	for _, p := range pulls {
		if strconv.Itoa(p.number) == number {
			return p, true
		}
	}
	return pull{}, false
}

// template reads a testdata object.
func (s *Server) template(name string) map[string]any {
	b, err := templates.ReadFile("testdata/" + name)
	require.NoError(s.t, err)
	var o map[string]any
	require.NoError(s.t, json.Unmarshal(b, &o))
	return o
}

func hours(h float64) any {
	if h == 0 {
		return nil
	}
	return At(h)
}

func (s *Server) pull(p pull) map[string]any {
	o := s.template("pull-request.json")
	delete(o, "merged") // the list does not say it
	o["number"], o["title"] = p.number, fmt.Sprintf("Change %d", p.number)
	o["url"] = fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", Repo, p.number)
	o["state"] = "open"
	if !p.open {
		o["state"] = "closed"
	}
	o["created_at"], o["updated_at"], o["closed_at"], o["merged_at"] = At(p.created), At(p.updated), hours(p.closed), hours(p.merged)
	o["merge_commit_sha"] = nil
	if p.merge != "" {
		o["merge_commit_sha"] = p.merge
	}
	head := o["head"].(map[string]any)
	head["sha"], head["ref"], head["label"] = p.head, p.ref, "octo:"+p.ref
	return o
}

func (s *Server) commit(sha, at string) map[string]any {
	c := s.template("git-commit.json")
	c["sha"] = sha
	c["author"].(map[string]any)["date"] = at
	c["committer"].(map[string]any)["date"] = at
	parents := c["parents"]
	delete(c, "parents")
	delete(c, "sha")
	delete(c, "node_id")
	delete(c, "html_url")
	return map[string]any{
		"sha": sha, "node_id": "C_" + sha[:8], "commit": c,
		"url":      "https://api.github.com/repos/" + Repo + "/commits/" + sha,
		"html_url": "https://github.com/" + Repo + "/commit/" + sha, "parents": parents,
	}
}

func (s *Server) review(p pull, rv review) map[string]any {
	o := s.template("review.json")
	o["id"], o["state"], o["submitted_at"], o["commit_id"] = rv.id, rv.state, At(rv.at), p.head
	return o
}

func (s *Server) deployment(d deployment) map[string]any {
	o := s.template("deployment.json")
	o["id"], o["sha"], o["ref"], o["environment"], o["original_environment"] = d.id, d.sha, "main", "production", "production"
	o["created_at"], o["updated_at"] = At(d.created), At(d.created)
	o["url"] = fmt.Sprintf("https://api.github.com/repos/%s/deployments/%d", Repo, d.id)
	return o
}

func (s *Server) status(d deployment, st status) map[string]any {
	o := s.template("deployment-status.json")
	o["id"], o["state"], o["created_at"], o["updated_at"] = st.id, st.state, At(st.at), At(st.at)
	o["deployment_url"] = fmt.Sprintf("https://api.github.com/repos/%s/deployments/%d", Repo, d.id)
	return o
}

func (s *Server) issue(i issue) map[string]any {
	o := s.template("issue.json")
	o["number"], o["title"], o["body"] = i.number, fmt.Sprintf("Incident %d", i.number), i.body
	o["labels"] = []any{map[string]any{"id": 1, "name": "incident", "color": "d73a4a", "default": false}}
	o["state"], o["created_at"], o["closed_at"] = "open", At(i.created), hours(i.closed)
	o["updated_at"] = At(i.created)
	if i.closed > 0 {
		o["state"], o["updated_at"] = "closed", At(i.closed)
	}
	return o
}

// Webhook is one delivery of the story as GitHub would have sent it live.
type Webhook struct {
	Event string
	Body  string
}

// Webhooks are the story's live deliveries, written as GitHub sends them (the fields DevOpstic
// reads, and the repository), in the order they happened.
func Webhooks() []Webhook {
	repo := `"repository":{"full_name":"` + Repo + `","name":"api"}`
	push := func(ref string, commits ...[2]string) Webhook {
		var cs []string
		for _, c := range commits {
			cs = append(cs, fmt.Sprintf(`{"id":%q,"timestamp":%q}`, c[0], c[1]))
		}
		head := commits[len(commits)-1]
		return Webhook{"push", fmt.Sprintf(`{"ref":"refs/heads/%s","after":%q,"commits":[%s],"head_commit":{"id":%q,"timestamp":%q},%s}`,
			ref, head[0], strings.Join(cs, ","), head[0], head[1], repo)}
	}
	pr := func(action string, number int, head, created string, merged bool, mergedAt, merge string) Webhook {
		return Webhook{"pull_request", fmt.Sprintf(`{"action":%q,"number":%d,"pull_request":{"number":%d,"state":"open","created_at":%q,"merged":%t,"merged_at":%s,"merge_commit_sha":%s,"head":{"sha":%q}},%s}`,
			action, number, number, created, merged, jsonOrNull(mergedAt), jsonOrNull(merge), head, repo)}
	}
	reviewed := func(state, at, commit string, number int) Webhook {
		return Webhook{"pull_request_review", fmt.Sprintf(`{"action":"submitted","review":{"state":%q,"submitted_at":%q,"commit_id":%q},"pull_request":{"number":%d,"head":{"sha":%q}},%s}`,
			state, at, commit, number, commit, repo)}
	}
	deployStatus := func(id int, sha, state, at string) Webhook {
		return Webhook{"deployment_status", fmt.Sprintf(`{"action":"created","deployment_status":{"state":%q,"created_at":%q},"deployment":{"id":%d,"sha":%q,"environment":"production"},%s}`,
			state, at, id, sha, repo)}
	}
	incident := func(action string, number int, created, closed, body string) Webhook {
		return Webhook{"issues", fmt.Sprintf(`{"action":%q,"issue":{"number":%d,"state":"open","created_at":%q,"closed_at":%s,"body":%q,"labels":[{"name":"incident"}]},%s}`,
			action, number, created, jsonOrNull(closed), body, repo)}
	}
	return []Webhook{
		push("feature-1", [2]string{A1, At(1)}, [2]string{H1, At(2)}),
		pr("opened", 1, H1, At(3), false, "", ""),
		reviewed("commented", At(3.5), H1, 1),
		reviewed("approved", At(4), H1, 1),
		pr("closed", 1, H1, At(3), true, At(5), M1),
		push("feature-2", [2]string{H2, At(6)}),
		deployStatus(101, M1, "in_progress", At(6)),
		deployStatus(101, M1, "success", At(6.5)),
		pr("opened", 2, H2, At(7), false, "", ""),
		pr("closed", 2, H2, At(7), true, At(9), M2),
		push("feature-3", [2]string{H3, At(10)}),
		deployStatus(102, M2, "failure", At(10.5)),
		incident("opened", 50, At(10.75), "", "Checkout is down.\n\nroot cause: 102\n"),
		pr("opened", 3, H3, At(11), false, "", ""),
		push("try-4", [2]string{H4, At(11.5)}),
		incident("closed", 50, At(10.75), At(11.75), "Checkout is down.\n\nroot cause: 102\n"),
		pr("opened", 4, H4, At(12), false, "", ""),
		deployStatus(103, M2, "success", At(12)),
		pr("closed", 4, H4, At(12), false, "", ""),
		incident("opened", 51, At(13), "", "Pages are slow."),
	}
}

func jsonOrNull(s string) string {
	if s == "" {
		return "null"
	}
	return strconv.Quote(s)
}
