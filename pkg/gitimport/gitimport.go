// Package gitimport imports a repository's past from a local clone (`devopstic import git`):
// every commit of a branch as a change, at its committer time, and the deployments that git can
// show (release tags, or the merges of a trunk-based branch), each shipping the commits between
// the previous deployment and itself.
//
// Reading (Read, with go-git) is kept apart from deciding (MakePlan, a pure function of the
// history) and from saying (Events, the native events of a plan), so that the decisions are
// tested on histories written out by hand. Git cannot know reviews, incidents or failed
// deployments; the import says so and sends none.
package gitimport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Errors of Read.
var (
	// ErrNotRepository: the path is not (inside) a git repository.
	ErrNotRepository = errors.New("not a git repository")
	// ErrUnknownBranch: the repository has no such branch.
	ErrUnknownBranch = errors.New("unknown branch")
)

// Read reads the history of branch ("" for the branch HEAD names) from the repository at dir
// (or a directory inside it): every commit reachable from the branch's tip, and every tag. It
// stops early when ctx is done.
func Read(ctx context.Context, dir, branch string) (History, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return History{}, fmt.Errorf("%w: %s (give the path of a clone)", ErrNotRepository, dir)
	}
	if err != nil {
		return History{}, fmt.Errorf("open the repository at %s: %w", dir, err)
	}
	tip, branch, err := resolveBranch(repo, branch)
	if err != nil {
		return History{}, err
	}
	h := History{Branch: branch, Tip: tip.String(), Commits: map[string]Commit{}}
	if err := readCommits(ctx, repo, tip, h.Commits); err != nil {
		return History{}, err
	}
	if h.Tags, err = readTags(repo, h.Commits); err != nil {
		return History{}, err
	}
	return h, nil
}

// resolveBranch finds the branch's tip: a local branch, else origin's; "" names HEAD's branch.
func resolveBranch(repo *git.Repository, branch string) (plumbing.Hash, string, error) {
	if branch == "" {
		head, err := repo.Reference(plumbing.HEAD, false)
		if err != nil {
			return plumbing.ZeroHash, "", fmt.Errorf("read HEAD: %w", err)
		}
		if head.Type() != plumbing.SymbolicReference || !head.Target().IsBranch() {
			return plumbing.ZeroHash, "", fmt.Errorf("%w: HEAD is detached; name the branch with --branch", ErrUnknownBranch)
		}
		branch = head.Target().Short()
	}
	for _, name := range []plumbing.ReferenceName{plumbing.NewBranchReferenceName(branch), plumbing.NewRemoteReferenceName("origin", branch)} {
		ref, err := repo.Reference(name, true)
		if err == nil {
			return ref.Hash(), branch, nil
		}
		if !errors.Is(err, plumbing.ErrReferenceNotFound) {
			return plumbing.ZeroHash, "", fmt.Errorf("read branch %s: %w", branch, err)
		}
	}
	var known []string
	if refs, err := repo.Branches(); err == nil {
		_ = refs.ForEach(func(r *plumbing.Reference) error {
			known = append(known, r.Name().Short())
			return nil
		})
	}
	slices.Sort(known)
	return plumbing.ZeroHash, "", fmt.Errorf("%w %q: the repository's branches are %s", ErrUnknownBranch, branch, strings.Join(known, ", "))
}

// readCommits adds every commit reachable from tip to commits.
func readCommits(ctx context.Context, repo *git.Repository, tip plumbing.Hash, commits map[string]Commit) error {
	stack := []plumbing.Hash{tip}
	seen := map[plumbing.Hash]bool{tip: true}
	for len(stack) > 0 {
		if len(commits)%4096 == 0 && ctx.Err() != nil {
			return fmt.Errorf("read the history: %w", ctx.Err())
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		c, err := repo.CommitObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) && h != tip {
			continue // a shallow clone's boundary: its history stops here
		}
		if err != nil {
			return fmt.Errorf("read commit %s: %w", h, err)
		}
		parents := make([]string, len(c.ParentHashes))
		for i, p := range c.ParentHashes {
			parents[i] = p.String()
			if !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
		commits[h.String()] = Commit{ID: h.String(), Parents: parents, At: c.Committer.When.UTC()}
	}
	return nil
}

// readTags reads every tag that names a commit. A lightweight tag's time is its commit's.
func readTags(repo *git.Repository, commits map[string]Commit) ([]Tag, error) {
	refs, err := repo.Tags()
	if err != nil {
		return nil, fmt.Errorf("read tags: %w", err)
	}
	var tags []Tag
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		name := ref.Name().Short()
		tag, err := repo.TagObject(ref.Hash())
		switch {
		case err == nil:
			c, err := tag.Commit()
			if errors.Is(err, object.ErrUnsupportedObject) {
				return nil // a tag of a tree or a blob
			}
			if err != nil {
				return fmt.Errorf("read tag %s: %w", name, err)
			}
			tags = append(tags, Tag{Name: name, Commit: c.Hash.String(), At: tag.Tagger.When.UTC()})
		case errors.Is(err, plumbing.ErrObjectNotFound):
			id := ref.Hash().String()
			if c, ok := commits[id]; ok {
				tags = append(tags, Tag{Name: name, Commit: id, At: c.At})
				return nil
			}
			c, err := repo.CommitObject(ref.Hash())
			if err != nil {
				return nil // not a commit, or not in this clone: no deployment of the branch
			}
			tags = append(tags, Tag{Name: name, Commit: id, At: c.Committer.When.UTC()})
		default:
			return fmt.Errorf("read tag %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return tags, nil
}

// Options are an import's: the repository and branch, what a deployment is, the window, and
// where the history goes.
type Options struct {
	Dir, Branch string
	Deploys     Deploys
	Window      Window
	// Pipeline and Environment are the pipeline the changes belong to and the environment the
	// deployments go to.
	Pipeline, Environment string
}

// Result is what an import sent.
type Result struct {
	History History
	Plan    Plan
	Events  int
}
