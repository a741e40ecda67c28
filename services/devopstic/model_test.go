package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/dora"
)

// The semantic cases of the DORA model (issue 13, docs/metrics.md "What a change is"), each
// through the whole stack, with figures worked out by hand from DORA.md. Against the model
// before the derived facts (a854f14) all but two failed: the squash merge and the later
// report, which guard what it got right (an early version of the derived facts got the later
// report wrong, and the property test caught it).

// modelT0 is the hour the stories below start at; hour(n) is n hours later, as RFC 3339.
var modelT0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func hour(n float64) string {
	return modelT0.Add(time.Duration(n * float64(time.Hour))).Format(time.RFC3339)
}

const modelRepo = `"repository":{"full_name":"acme/api","name":"api"}`

// deliverAll sends GitHub deliveries (event name, body) in the order given and waits until
// the writer has them all.
func (s *stack) deliverAll(deliveries [][2]string) {
	s.t.Helper()
	before := s.count(`SELECT count(*) FROM events`)
	for i, d := range deliveries {
		status, out := s.deliver(d[0], fmt.Sprintf("%s-%d-%d", s.t.Name(), before, i), []byte(d[1]), "")
		require.Equal(s.t, http.StatusAccepted, status, "%s: %s", d[0], out)
	}
	s.waitCount(before+len(deliveries), `SELECT count(*) FROM events`)
	s.waitDrained()
}

// report is GET /api/v1/metrics/dora for a pipeline in production over [from, to).
func (s *stack) report(pipeline, from, to string) dora.Report {
	s.t.Helper()
	var r dora.Report
	require.NoError(s.t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?pipeline_id="+pipeline+"&from="+from+"&to="+to)), &r))
	return r
}

func hours(h float64) *int64 {
	s := int64(h * 3600)
	return &s
}

// A pull request merged by a merge commit: the push to main lists c1 (committed straight to
// main before the branch was merged), the branch's head H and the merge commit M. DORA.md:
// c1 is a change; H and M are one change, with the earlier of their times. Deployed at hour 10.
//
//	c1 committed 0; H committed 1; PR opened 2, approved 3; merged (M) 4; deployed 10.
//	c1: 10 h. {H, M}: from H's commit, 9 h; review 1 h; deploy part 7 h.
//	The median of 9 h and 10 h is 9.5 h. (The old model counted c1, H and M as three changes,
//	each from c1's time.)
func TestMergeCommitPushIsTwoChanges(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	s.deliverAll([][2]string{
		{"push", `{"ref":"refs/heads/feature","after":"4444444444","commits":[{"id":"4444444444","timestamp":"` + hour(1) + `"}],` + modelRepo + `}`},
		{"pull_request", `{"action":"opened","pull_request":{"number":5,"created_at":"` + hour(2) + `","merged":false,"head":{"sha":"4444444444"}},` + modelRepo + `}`},
		{"pull_request_review", `{"action":"submitted","review":{"state":"approved","submitted_at":"` + hour(3) + `","commit_id":"4444444444"},"pull_request":{"number":5,"head":{"sha":"4444444444"}},` + modelRepo + `}`},
		{"pull_request", `{"action":"closed","pull_request":{"number":5,"created_at":"` + hour(2) + `","merged":true,"merged_at":"` + hour(4) + `","merge_commit_sha":"mmmmmmmmmm","head":{"sha":"4444444444"}},` + modelRepo + `}`},
		{"push", `{"ref":"refs/heads/main","after":"mmmmmmmmmm","commits":[{"id":"cccccccc01","timestamp":"` + hour(0) + `"},{"id":"4444444444","timestamp":"` + hour(1) + `"},{"id":"mmmmmmmmmm","timestamp":"` + hour(4) + `"}],` + modelRepo + `}`},
		{"deployment_status", `{"deployment_status":{"id":11,"state":"success","created_at":"` + hour(10) + `"},"deployment":{"id":10,"sha":"mmmmmmmmmm","environment":"production"},` + modelRepo + `}`},
	})
	lt := s.report("acme/api", "2026-11-01", "2026-11-08").LeadTime
	elite := dora.Elite
	require.Equal(t, dora.LeadTime{Changes: 2, MedianSeconds: hours(9.5), P90Seconds: hours(9.9), MeanSeconds: hours(9.5),
		ReviewMedianSeconds: hours(1), DeployMedianSeconds: hours(7), Tier: &elite}, lt)
}

// A squash merge (GitHub: merge_commit_sha is the squash commit S, and the push to main
// brings S alone) keeps the times of the commits it replaced, those of the branch's push.
//
//	c1 committed 0, c2 (the head) 1, pushed together; PR opened 2, approved 3; squashed 4 as S;
//	deployed 5: one change, from c1's commit, 5 h.
func TestSquashMergeKeepsTheReplacedCommitsTimes(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	s.deliverAll([][2]string{
		{"push", `{"ref":"refs/heads/feature","after":"c2c2c2c2c2","commits":[{"id":"c1c1c1c1c1","timestamp":"` + hour(0) + `"},{"id":"c2c2c2c2c2","timestamp":"` + hour(1) + `"}],` + modelRepo + `}`},
		{"pull_request", `{"action":"closed","pull_request":{"number":5,"created_at":"` + hour(2) + `","merged":true,"merged_at":"` + hour(4) + `","merge_commit_sha":"5555555555","head":{"sha":"c2c2c2c2c2"}},` + modelRepo + `}`},
		{"push", `{"ref":"refs/heads/main","after":"5555555555","commits":[{"id":"5555555555","timestamp":"` + hour(4) + `"}],` + modelRepo + `}`},
		{"deployment_status", `{"deployment_status":{"id":11,"state":"success","created_at":"` + hour(5) + `"},"deployment":{"id":10,"sha":"5555555555","environment":"production"},` + modelRepo + `}`},
	})
	lt := s.report("acme/api", "2026-11-01", "2026-11-08").LeadTime
	require.Equal(t, int64(1), lt.Changes)
	require.Equal(t, hours(5), lt.MedianSeconds, "from c1's commit, the earliest commit S replaced")
	require.Equal(t, hours(1), lt.DeployMedianSeconds, "the merge approves when no review did: merged 4, deployed 5")
}

// A squash merge of a branch pushed twice keeps the times of both pushes: GitHub's
// pull_request opened and synchronize events name each head the pull request had, and the
// merge replaced the commits of the pushes of those heads. Delivered in reverse order.
//
//	c1 committed 0, pushed (PR opened at 1 with head c1); c2 committed 2, pushed (synchronize);
//	squashed at 4 as S, S pushed to main and deployed at 6: one change, from c1's commit, 6 h.
func TestSquashMergeOfSeveralPushes(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	deliveries := [][2]string{
		{"push", `{"ref":"refs/heads/feature","before":"0000000000000000000000000000000000000000","after":"c1c1c1c1c1","commits":[{"id":"c1c1c1c1c1","timestamp":"` + hour(0) + `"}],` + modelRepo + `}`},
		{"pull_request", `{"action":"opened","pull_request":{"number":5,"created_at":"` + hour(1) + `","merged":false,"head":{"sha":"c1c1c1c1c1"}},` + modelRepo + `}`},
		{"push", `{"ref":"refs/heads/feature","before":"c1c1c1c1c1","after":"c2c2c2c2c2","commits":[{"id":"c2c2c2c2c2","timestamp":"` + hour(2) + `"}],` + modelRepo + `}`},
		{"pull_request", `{"action":"synchronize","before":"c1c1c1c1c1","after":"c2c2c2c2c2","pull_request":{"number":5,"created_at":"` + hour(1) + `","merged":false,"head":{"sha":"c2c2c2c2c2"}},` + modelRepo + `}`},
		{"pull_request", `{"action":"closed","pull_request":{"number":5,"created_at":"` + hour(1) + `","merged":true,"merged_at":"` + hour(4) + `","merge_commit_sha":"5555555555","head":{"sha":"c2c2c2c2c2"}},` + modelRepo + `}`},
		{"push", `{"ref":"refs/heads/main","after":"5555555555","commits":[{"id":"5555555555","timestamp":"` + hour(4) + `"}],` + modelRepo + `}`},
		{"deployment_status", `{"deployment_status":{"id":11,"state":"success","created_at":"` + hour(6) + `"},"deployment":{"id":10,"sha":"5555555555","environment":"production"},` + modelRepo + `}`},
	}
	slices.Reverse(deliveries)
	s.deliverAll(deliveries)
	lt := s.report("acme/api", "2026-11-01", "2026-11-08").LeadTime
	require.Equal(t, int64(1), lt.Changes)
	require.Equal(t, hours(6), lt.MedianSeconds, "from c1's commit, in the branch's first push")
}

// A change's first deployment is per change: the head H deployed to production at hour 5
// (from the branch), the merge commit M at hour 8. M is not a new change with a lead time of
// its own. The change counts once, in the window of hour 5, from H's commit at hour 1.
func TestFirstDeploymentIsPerChange(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	s.deliverAll([][2]string{
		{"push", `{"ref":"refs/heads/feature","after":"4444444444","commits":[{"id":"4444444444","timestamp":"` + hour(1) + `"}],` + modelRepo + `}`},
		{"deployment_status", `{"deployment_status":{"id":21,"state":"success","created_at":"` + hour(5) + `"},"deployment":{"id":20,"sha":"4444444444","environment":"production"},` + modelRepo + `}`},
		{"pull_request", `{"action":"closed","pull_request":{"number":5,"created_at":"` + hour(2) + `","merged":true,"merged_at":"` + hour(6) + `","merge_commit_sha":"mmmmmmmmmm","head":{"sha":"4444444444"}},` + modelRepo + `}`},
		{"push", `{"ref":"refs/heads/main","after":"mmmmmmmmmm","commits":[{"id":"4444444444","timestamp":"` + hour(1) + `"},{"id":"mmmmmmmmmm","timestamp":"` + hour(6) + `"}],` + modelRepo + `}`},
		{"deployment_status", `{"deployment_status":{"id":31,"state":"success","created_at":"` + hour(8) + `"},"deployment":{"id":30,"sha":"mmmmmmmmmm","environment":"production"},` + modelRepo + `}`},
	})
	whole := s.report("acme/api", "2026-11-01", "2026-11-08").LeadTime
	require.Equal(t, int64(1), whole.Changes, "H and M are one change")
	require.Equal(t, hours(4), whole.MedianSeconds, "deployed first at hour 5, committed at hour 1")
	later := s.report("acme/api", hour(7), "2026-11-08").LeadTime
	require.Equal(t, int64(0), later.Changes, "M's deployment deploys no new change")

	// GET /commits says the same of both commits.
	var page struct {
		Items []struct {
			CommitID        string               `json:"commit_id"`
			ChangeID        string               `json:"change_id"`
			FirstDeployedAt map[string]time.Time `json:"first_deployed_at"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(s.getJSON("/commits?pipeline_id=acme/api")), &page))
	require.Len(t, page.Items, 2)
	for _, c := range page.Items {
		require.Equal(t, "4444444444", c.ChangeID, "%s: named by the smallest commit id", c.CommitID)
		require.Equal(t, map[string]time.Time{"production": modelT0.Add(5 * time.Hour)}, c.FirstDeployedAt, c.CommitID)
	}
}

// GET /commits' first_deployed_at counts commits a deployment ships through a push (DORA.md:
// "for GitHub the commits of the push whose head is the deployed commit"), as the metrics do.
func TestCommitsFirstDeployedAtIncludesPushedCommits(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	s.deliverAll([][2]string{
		{"push", `{"ref":"refs/heads/main","after":"bbbbbbbbbb","commits":[{"id":"aaaaaaaaaa","timestamp":"` + hour(0) + `"},{"id":"bbbbbbbbbb","timestamp":"` + hour(1) + `"}],` + modelRepo + `}`},
		{"deployment_status", `{"deployment_status":{"id":11,"state":"success","created_at":"` + hour(3) + `"},"deployment":{"id":10,"sha":"bbbbbbbbbb","environment":"production"},` + modelRepo + `}`},
	})
	require.Equal(t, int64(2), s.report("acme/api", "2026-11-01", "2026-11-08").LeadTime.Changes)
	var page struct {
		Items []struct {
			CommitID        string               `json:"commit_id"`
			FirstDeployedAt map[string]time.Time `json:"first_deployed_at"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(s.getJSON("/commits?pipeline_id=acme/api")), &page))
	require.Len(t, page.Items, 2)
	for _, c := range page.Items {
		require.Equal(t, map[string]time.Time{"production": modelT0.Add(3 * time.Hour)}, c.FirstDeployedAt, c.CommitID)
	}
}

// An incident may name its cause by a prefix of at least 7 hex characters when exactly one
// known commit of the pipeline has it (DORA.md). A later commit with the same prefix makes
// the name ambiguous, and the deployment is no longer counted as failed; a longer prefix
// tells them apart again.
func TestShortSHANamesACommit(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	native := func(events ...string) {
		before := s.count(`SELECT count(*) FROM events`)
		s.postJSON(http.StatusAccepted, "["+strings.Join(events, ",")+"]")
		s.waitCount(before+len(events), `SELECT count(*) FROM events`)
		s.waitDrained()
	}
	ev := func(format string, args ...any) string { return fmt.Sprintf(format, args...) }
	failed := func() int64 { return s.report("api", "2026-11-01", "2026-11-08").ChangeFailureRate.Failed }

	native(
		ev(`{"type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"d1","commit_id":"0123456789abcdef","status":"success","timestamp":%q}`, hour(1)),
		ev(`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","commit_id":"0123456","status":"failure","timestamp":%q}`, hour(2)),
		ev(`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i2","commit_id":"012345","status":"failure","timestamp":%q}`, hour(2)),
	)
	require.Equal(t, int64(1), failed(), "0123456 names 0123456789abcdef; 012345 is too short to name anything")

	native(ev(`{"type":"commit","pipeline_id":"api","commit_id":"0123456fffffffff","timestamp":%q}`, hour(3)))
	require.Equal(t, int64(0), failed(), "0123456 is now the prefix of two commits")

	native(ev(`{"type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i3","commit_id":"01234567","status":"failure","timestamp":%q}`, hour(4)))
	require.Equal(t, int64(1), failed(), "01234567 names one commit again")
}

// A later report of a deploy attempt decides its status for every commit it ships: a success
// listing a, then a failure of the same attempt listing b, deploys neither.
func TestLaterReportDecidesForEveryCommit(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	post := func(event string) {
		before := s.count(`SELECT count(*) FROM events`)
		s.postJSON(http.StatusAccepted, event)
		s.waitCount(before+1, `SELECT count(*) FROM events`)
		s.waitDrained()
	}
	post(fmt.Sprintf(`{"type":"commit","pipeline_id":"api","commit_id":"a","timestamp":%q}`, hour(0)))
	post(fmt.Sprintf(`{"type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"d1","commit_id":"a","status":"success","timestamp":%q}`, hour(1)))
	require.Equal(t, int64(1), s.report("api", "2026-11-01", "2026-11-08").LeadTime.Changes)
	post(fmt.Sprintf(`{"type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"d1","commit_id":"b","status":"failure","timestamp":%q}`, hour(2)))
	require.Equal(t, int64(0), s.report("api", "2026-11-01", "2026-11-08").LeadTime.Changes, "d1 failed: a was never deployed")
}

// An approving review made after the merge is the change's approval (DORA.md: the merge
// approves only "a pull request merged without an approving review").
//
//	committed 0, opened 1, merged 2, approved 3, deployed 6: review 2 h, deploy part 3 h.
func TestReviewAfterTheMergeIsTheApproval(t *testing.T) {
	t.Parallel()
	s := startGitHubStack(t)
	s.deliverAll([][2]string{
		{"push", `{"ref":"refs/heads/main","after":"mmmmmmmmmm","commits":[{"id":"4444444444","timestamp":"` + hour(0) + `"},{"id":"mmmmmmmmmm","timestamp":"` + hour(2) + `"}],` + modelRepo + `}`},
		{"pull_request", `{"action":"closed","pull_request":{"number":5,"created_at":"` + hour(1) + `","merged":true,"merged_at":"` + hour(2) + `","merge_commit_sha":"mmmmmmmmmm","head":{"sha":"4444444444"}},` + modelRepo + `}`},
		{"pull_request_review", `{"action":"submitted","review":{"state":"approved","submitted_at":"` + hour(3) + `","commit_id":"4444444444"},"pull_request":{"number":5,"head":{"sha":"4444444444"}},` + modelRepo + `}`},
		{"deployment_status", `{"deployment_status":{"id":11,"state":"success","created_at":"` + hour(6) + `"},"deployment":{"id":10,"sha":"mmmmmmmmmm","environment":"production"},` + modelRepo + `}`},
	})
	lt := s.report("acme/api", "2026-11-01", "2026-11-08").LeadTime
	require.Equal(t, int64(1), lt.Changes)
	require.Equal(t, hours(2), lt.ReviewMedianSeconds)
	require.Equal(t, hours(3), lt.DeployMedianSeconds)
}

// An event id names one event: a message reusing an id that is already written, whatever it
// says, changes nothing, so the tables are what the events table alone gives (a rebuild
// changes nothing) and what the first copy alone gave.
func TestReusedIDKeepsTheFirstCopy(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	first := messages(t, []string{fmt.Sprintf(`{"id":"run-7","type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"d7","commit_id":"a","status":"success","timestamp":%q}`, hour(1))}, received)
	publish(t, s.nats, first)
	s.waitCount(1, `SELECT count(*) FROM events`)
	s.waitDrained()
	want := fullDump(t, s.db)

	// The same id with other content, published under another message id (as past JetStream's
	// duplicate window, or by another publisher), so that the stream keeps both.
	second := messages(t, []string{fmt.Sprintf(`{"id":"run-7","type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"d8","commit_id":"b","status":"failure","timestamp":%q}`, hour(2))}, received)
	second[0].ID += "-again"
	publish(t, s.nats, second)
	require.Equal(t, uint64(2), s.streamMessages(), "the stream dropped the second copy: the test proves nothing")
	s.waitDrained()
	compareDumps(t, "after a second copy of run-7", want, fullDump(t, s.db))

	out, err := s.admin("rebuild")
	require.NoError(t, err, out)
	compareDumps(t, "after a rebuild from the events table", want, fullDump(t, s.db))
	out, err = s.admin("rebuild", "--from-stream")
	require.NoError(t, err, out)
	compareDumps(t, "after a rebuild from the stream", want, fullDump(t, s.db))
}
