package gitimport

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// History is what the importer reads from a repository: the commits reachable from a branch's
// tip, and its tags.
type History struct {
	// Branch is the branch read, and Tip the commit it points to.
	Branch, Tip string
	// Commits are every commit reachable from Tip, by id.
	Commits map[string]Commit
	// Tags are every tag of the repository (only those on the branch can be deployments).
	Tags []Tag
}

// Commit is one commit: its parents (the first parent first) and its committer time.
type Commit struct {
	ID      string
	Parents []string
	At      time.Time
}

// Tag is a tag, peeled to the commit it names. At is the tagger's time for an annotated tag,
// the commit's committer time for a lightweight one.
type Tag struct {
	Name   string
	Commit string
	At     time.Time
}

// Deploys says what, in git, is a deployment.
type Deploys struct {
	// TagGlob, when set, makes every tag matching it (path.Match, on the tag's short name such
	// as v1.2.0) a deployment of the commit it names, at the tag's time.
	TagGlob string
	// Merges makes every merge commit on the branch's first-parent line a deployment, at its
	// committer time (trunk-based teams that deploy each merge).
	Merges bool
}

// ParseDeploys reads --deploys: "tags=<glob>", "merges", or "" for none.
func ParseDeploys(s string) (Deploys, error) {
	switch glob, isTags := strings.CutPrefix(s, "tags="); {
	case s == "":
		return Deploys{}, nil
	case s == "merges":
		return Deploys{Merges: true}, nil
	case isTags && glob != "":
		if _, err := path.Match(glob, ""); err != nil {
			return Deploys{}, fmt.Errorf("%w: --deploys tags=%s: %w", ErrInvalid, glob, err)
		}
		return Deploys{TagGlob: glob}, nil
	}
	return Deploys{}, fmt.Errorf("%w: --deploys must be tags=<glob> (such as tags=v*) or merges, not %q", ErrInvalid, s)
}

// ErrInvalid marks a bad option.
var ErrInvalid = errors.New("invalid import option")

// Window is the time range imported: commits and deployments at or after Since and before
// Until. A zero bound is open.
type Window struct {
	Since, Until time.Time
}

func (w Window) contains(t time.Time) bool {
	return (w.Since.IsZero() || !t.Before(w.Since)) && (w.Until.IsZero() || t.Before(w.Until))
}

// Plan is what an import sends: the changes (commits) of the window, oldest first, and the
// deployments of the window, oldest first.
type Plan struct {
	Changes     []Commit
	Deployments []Deployment
	// TagsOffBranch counts the tags that matched the glob but name no commit of the branch.
	TagsOffBranch int
	// First and Last are the times of the earliest and latest change or deployment.
	First, Last time.Time
}

// Deployment is one successful deployment that git shows: a release tag or a merge.
type Deployment struct {
	// Name is the tag's name, or the merge commit's id.
	Name   string
	Commit string
	At     time.Time
	// Ships are the commits of the window that this deployment ships and no earlier one did:
	// those reachable from Commit and from no earlier deployment. Commit itself is first.
	Ships []string
}

// MakePlan decides what to import from h: a pure function of the history, the deploys and the
// window.
//
// A deployment ships every commit reachable from it that no earlier deployment reached, which on
// a linear history is every commit since the previous deployment. Deployments before the window
// are worked out only to know what they shipped; of the commits shipped by a deployment of the
// window, only those of the window are imported (a commit older than --since is not).
func MakePlan(h History, deploys Deploys, w Window) Plan {
	var p Plan
	for _, c := range h.Commits {
		if w.contains(c.At) {
			p.Changes = append(p.Changes, c)
		}
	}
	slices.SortFunc(p.Changes, func(a, b Commit) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.ID, b.ID))
	})

	candidates, offBranch := deploymentCandidates(h, deploys)
	p.TagsOffBranch = offBranch
	deployed := make(map[string]bool, len(h.Commits))
	for _, d := range candidates {
		if !w.Until.IsZero() && !d.At.Before(w.Until) {
			break // later deployments cannot change what earlier ones shipped
		}
		ships := reach(h, d.Commit, deployed)
		if !w.contains(d.At) {
			continue
		}
		d.Ships = slices.DeleteFunc(ships, func(id string) bool { return id != d.Commit && !w.contains(h.Commits[id].At) })
		p.Deployments = append(p.Deployments, d)
	}

	for _, c := range p.Changes {
		p.First, p.Last = earliest(p.First, c.At), latest(p.Last, c.At)
	}
	for _, d := range p.Deployments {
		p.First, p.Last = earliest(p.First, d.At), latest(p.Last, d.At)
	}
	return p
}

// deploymentCandidates are the deployments git shows, oldest first (the same time: in
// first-parent order for merges, by name for tags). A commit that several matching tags name is
// deployed once, by the earliest tag.
func deploymentCandidates(h History, deploys Deploys) (ds []Deployment, offBranch int) {
	switch {
	case deploys.TagGlob != "":
		byCommit := map[string]Deployment{}
		for _, t := range h.Tags {
			if ok, _ := path.Match(deploys.TagGlob, t.Name); !ok {
				continue
			}
			if _, onBranch := h.Commits[t.Commit]; !onBranch {
				offBranch++
				continue
			}
			d := Deployment{Name: t.Name, Commit: t.Commit, At: t.At}
			if have, ok := byCommit[t.Commit]; !ok || cmp.Or(d.At.Compare(have.At), strings.Compare(d.Name, have.Name)) < 0 {
				byCommit[t.Commit] = d
			}
		}
		for _, d := range byCommit {
			ds = append(ds, d)
		}
		slices.SortFunc(ds, func(a, b Deployment) int { return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Name, b.Name)) })
	case deploys.Merges:
		// The first-parent line, newest first; reversed below.
		for id := h.Tip; id != ""; {
			c, ok := h.Commits[id]
			if !ok {
				break
			}
			if len(c.Parents) > 1 {
				ds = append(ds, Deployment{Name: c.ID, Commit: c.ID, At: c.At})
			}
			id = ""
			if len(c.Parents) > 0 {
				id = c.Parents[0]
			}
		}
		slices.Reverse(ds)
		slices.SortStableFunc(ds, func(a, b Deployment) int { return a.At.Compare(b.At) })
	}
	return ds, offBranch
}

// reach returns the commits reachable from id that are not yet in deployed, id first, and adds
// them to deployed.
func reach(h History, id string, deployed map[string]bool) []string {
	if deployed[id] {
		return nil
	}
	var out []string
	stack := []string{id}
	deployed[id] = true
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		out = append(out, cur)
		for _, parent := range h.Commits[cur].Parents {
			if _, known := h.Commits[parent]; known && !deployed[parent] {
				deployed[parent] = true
				stack = append(stack, parent)
			}
		}
	}
	return out
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
