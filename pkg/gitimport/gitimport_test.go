package gitimport_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/gitimport"
	"github.com/devopstic/devopstic/pkg/gitimport/gitimporttest"
)

var base = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func TestReadSeesCommitsMergesAndTags(t *testing.T) {
	t.Parallel()
	s := gitimporttest.BuildStory(t, base)
	h, err := gitimport.Read(context.Background(), s.Repo.Dir, "")
	require.NoError(t, err)
	require.Equal(t, "main", h.Branch, "HEAD names main")
	require.Equal(t, s.C5, h.Tip)
	require.Len(t, h.Commits, 8, "every commit reachable from main; h1 is not")
	require.NotContains(t, h.Commits, s.H1)
	require.Equal(t, []string{s.C3, s.F2}, h.Commits[s.M1].Parents, "the first parent first")
	require.Equal(t, s.At(11), h.Commits[s.C3].At)

	tags := map[string]gitimport.Tag{}
	for _, tag := range h.Tags {
		tags[tag.Name] = tag
	}
	require.Equal(t, gitimport.Tag{Name: "v1.0.0", Commit: s.C2, At: s.At(4)}, tags["v1.0.0"], "annotated: the tagger's time")
	require.Equal(t, gitimport.Tag{Name: "v1.1.0", Commit: s.M1, At: s.At(13)}, tags["v1.1.0"], "lightweight: the commit's time")
	require.Equal(t, gitimport.Tag{Name: "v0.9-hotfix", Commit: s.H1, At: s.At(5)}, tags["v0.9-hotfix"])
	require.Len(t, tags, 5)

	feature, err := gitimport.Read(context.Background(), filepath.Join(s.Repo.Dir, ".git"), "feature")
	require.NoError(t, err)
	require.Equal(t, s.F2, feature.Tip)
	require.Len(t, feature.Commits, 4)
}

func TestReadRefusesWhatIsNotThere(t *testing.T) {
	t.Parallel()
	s := gitimporttest.BuildStory(t, base)
	_, err := gitimport.Read(context.Background(), t.TempDir(), "")
	require.ErrorIs(t, err, gitimport.ErrNotRepository)

	_, err = gitimport.Read(context.Background(), s.Repo.Dir, "trunk")
	require.ErrorIs(t, err, gitimport.ErrUnknownBranch)
	require.ErrorContains(t, err, `"trunk": the repository's branches are feature, main`)

	missing := filepath.Join(t.TempDir(), "nowhere")
	_, err = gitimport.Read(context.Background(), missing, "")
	require.ErrorIs(t, err, gitimport.ErrNotRepository)
	_, statErr := os.Stat(missing)
	require.ErrorIs(t, statErr, os.ErrNotExist, "nothing was created")
}

// story is the Story's history as Read gives it, written out by hand: MakePlan is tested apart
// from go-git.
func story() (gitimporttest.Story, gitimport.History) {
	s := gitimporttest.Story{T: base, C1: "c1", C2: "c2", C3: "c3", F1: "f1", F2: "f2", M1: "m1", C4: "c4", C5: "c5", H1: "h1"}
	commit := func(id string, h float64, parents ...string) gitimport.Commit {
		return gitimport.Commit{ID: id, Parents: parents, At: s.At(h)}
	}
	h := gitimport.History{Branch: "main", Tip: "c5", Commits: map[string]gitimport.Commit{}}
	for _, c := range []gitimport.Commit{
		commit("c1", 1), commit("c2", 2, "c1"), commit("f1", 10, "c2"), commit("c3", 11, "c2"),
		commit("f2", 12, "f1"), commit("m1", 13, "c3", "f2"), commit("c4", 25, "m1"), commit("c5", 30, "c4"),
	} {
		h.Commits[c.ID] = c
	}
	h.Tags = []gitimport.Tag{
		{Name: "v1.2.0", Commit: "c4", At: s.At(27)}, {Name: "v1.0.0", Commit: "c2", At: s.At(4)},
		{Name: "v1.1.0", Commit: "m1", At: s.At(13)}, {Name: "nightly-1", Commit: "c5", At: s.At(30)},
		{Name: "v0.9-hotfix", Commit: "h1", At: s.At(5)},
	}
	return s, h
}

func sorted(ids ...string) []string { return slices.Sorted(slices.Values(ids)) }

func ships(t *testing.T, p gitimport.Plan) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, d := range p.Deployments {
		require.Equal(t, d.Commit, d.Ships[0], "the deployed commit comes first")
		out[d.Name] = sorted(d.Ships...)
	}
	return out
}

func TestPlanTagsShipWhatTheLastTagDidNot(t *testing.T) {
	t.Parallel()
	s, h := story()
	p := gitimport.MakePlan(h, gitimport.Deploys{TagGlob: "v*"}, gitimport.Window{})
	require.Len(t, p.Changes, 8)
	require.Equal(t, "c1", p.Changes[0].ID, "oldest first")
	require.Equal(t, 1, p.TagsOffBranch, "v0.9-hotfix")
	require.Equal(t, map[string][]string{
		"v1.0.0": {"c1", "c2"},
		"v1.1.0": {"c3", "f1", "f2", "m1"},
		"v1.2.0": {"c4"},
	}, ships(t, p))
	require.Equal(t, []time.Time{s.At(4), s.At(13), s.At(27)}, []time.Time{p.Deployments[0].At, p.Deployments[1].At, p.Deployments[2].At})
	require.Equal(t, s.At(1), p.First)
	require.Equal(t, s.At(30), p.Last)
}

func TestPlanMergesShipTheirBranches(t *testing.T) {
	t.Parallel()
	s, h := story()
	p := gitimport.MakePlan(h, gitimport.Deploys{Merges: true}, gitimport.Window{})
	require.Equal(t, map[string][]string{"m1": {"c1", "c2", "c3", "f1", "f2", "m1"}}, ships(t, p))
	require.Equal(t, s.At(13), p.Deployments[0].At)
}

func TestPlanWindow(t *testing.T) {
	t.Parallel()
	s, h := story()
	// From hour 11 to hour 26: v1.0.0 is before it (but still decides what v1.1.0 ships), v1.2.0
	// at 27 after it.
	p := gitimport.MakePlan(h, gitimport.Deploys{TagGlob: "v1.*"}, gitimport.Window{Since: s.At(11), Until: s.At(26)})
	var ids []string
	for _, c := range p.Changes {
		ids = append(ids, c.ID)
	}
	require.Equal(t, []string{"c3", "f2", "m1", "c4"}, ids)
	require.Equal(t, map[string][]string{"v1.1.0": {"c3", "f2", "m1"}}, ships(t, p), "f1 (hour 10) is before the window")

	// A deployment of a commit older than the window still names it.
	p = gitimport.MakePlan(h, gitimport.Deploys{TagGlob: "v1.0.0"}, gitimport.Window{Since: s.At(3)})
	require.Equal(t, map[string][]string{"v1.0.0": {"c2"}}, ships(t, p))
}

func TestPlanOneDeploymentPerCommit(t *testing.T) {
	t.Parallel()
	s, h := story()
	h.Tags = append(h.Tags, gitimport.Tag{Name: "v1.2.0-rc1", Commit: "c4", At: s.At(26)}, gitimport.Tag{Name: "v1.2", Commit: "c4", At: s.At(28)})
	p := gitimport.MakePlan(h, gitimport.Deploys{TagGlob: "v1.2*"}, gitimport.Window{})
	require.Len(t, p.Deployments, 1)
	require.Equal(t, "v1.2.0-rc1", p.Deployments[0].Name, "the earliest tag of the commit")
	require.Equal(t, sorted("c1", "c2", "c3", "c4", "f1", "f2", "m1"), sorted(p.Deployments[0].Ships...))
}

func TestParseDeploys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    gitimport.Deploys
		wantErr error
	}{
		{in: "", want: gitimport.Deploys{}},
		{in: "merges", want: gitimport.Deploys{Merges: true}},
		{in: "tags=v*", want: gitimport.Deploys{TagGlob: "v*"}},
		{in: "tags=", wantErr: gitimport.ErrInvalid},
		{in: "tags=[", wantErr: gitimport.ErrInvalid},
		{in: "releases", wantErr: gitimport.ErrInvalid},
	} {
		got, err := gitimport.ParseDeploys(tc.in)
		require.ErrorIs(t, err, tc.wantErr, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

// The events are valid native events, with stable ids, and a deployment shipping more commits
// than one event lists is split into events of the same deployment.
func TestEvents(t *testing.T) {
	t.Parallel()
	s, h := story()
	p := gitimport.MakePlan(h, gitimport.Deploys{TagGlob: "v*"}, gitimport.Window{})
	bodies, err := gitimport.Events(p, "api", "production")
	require.NoError(t, err)
	require.Len(t, bodies, 8+3)
	seen := map[string]bool{}
	for _, b := range bodies {
		e, err := event.Decode(b, time.Now())
		require.NoError(t, err, "%s", b)
		require.False(t, e.TimeInferred)
		require.False(t, seen[e.ID], "ids are unique")
		seen[e.ID] = true
	}
	again, err := gitimport.Events(gitimport.MakePlan(h, gitimport.Deploys{TagGlob: "v*"}, gitimport.Window{}), "api", "production")
	require.NoError(t, err)
	require.Equal(t, bodies, again, "the same history, the same events")
	var deploy map[string]any
	require.NoError(t, json.Unmarshal(bodies[8], &deploy))
	require.Equal(t, map[string]any{"id": "git:deploy:production:c2:0", "type": "deploy", "pipeline_id": "api", "environment": "production",
		"commit_id": "c2", "commits": []any{"c2", "c1"}, "deployment_id": "v1.0.0", "status": "success",
		"timestamp": s.At(4).Format(time.RFC3339)}, deploy)

	big := gitimport.Plan{Deployments: []gitimport.Deployment{{Name: "v9", Commit: "x0", At: s.At(1)}}}
	for i := range gitimport.ShipsPerEvent + 1 {
		big.Deployments[0].Ships = append(big.Deployments[0].Ships, "x"+string(rune('0'+i%10))+time.Duration(i).String())
	}
	bodies, err = gitimport.Events(big, "api", "production")
	require.NoError(t, err)
	require.Len(t, bodies, 2)
	var total int
	for _, b := range bodies {
		e, err := event.Decode(b, time.Now())
		require.NoError(t, err)
		require.Equal(t, "v9", e.DeploymentID)
		total += len(e.Commits)
	}
	require.Equal(t, gitimport.ShipsPerEvent+1, total)
}
