// Package gitimporttest builds git repositories for the tests of `devopstic import git`: commits
// with the times a test sets, merges, branches and tags, written with go-git into a directory of
// the test's own, as a clone would have them.
package gitimporttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage"
	"github.com/stretchr/testify/require"
)

// Repo is a repository being built.
type Repo struct {
	t    testing.TB
	Dir  string
	Repo *git.Repository
	tree plumbing.Hash
	n    int
}

// New makes an empty repository in a temporary directory, its HEAD on main.
func New(t testing.TB) *Repo {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	require.NoError(t, err)
	require.NoError(t, repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName("main"))))
	r := &Repo{t: t, Dir: dir, Repo: repo}
	r.tree = r.store(&object.Tree{})
	return r
}

type encoder interface {
	Encode(plumbing.EncodedObject) error
}

func (r *Repo) store(o encoder) plumbing.Hash {
	r.t.Helper()
	return Store(r.t, r.Repo.Storer, o)
}

// Store writes an object (a commit, a tree, a tag) into s.
func Store(t testing.TB, s storage.Storer, o encoder) plumbing.Hash {
	obj := s.NewEncodedObject()
	require.NoError(t, o.Encode(obj))
	h, err := s.SetEncodedObject(obj)
	require.NoError(t, err)
	return h
}

// Commit writes a commit committed (and authored) at at, with parents (none: a root commit),
// and returns its id. It moves no branch.
func (r *Repo) Commit(at time.Time, parents ...string) string {
	r.t.Helper()
	r.n++
	sig := object.Signature{Name: "Dev", Email: "dev@example.com", When: at}
	c := &object.Commit{Author: sig, Committer: sig, TreeHash: r.tree, Message: fmt.Sprintf("change %d\n", r.n)}
	for _, p := range parents {
		c.ParentHashes = append(c.ParentHashes, plumbing.NewHash(p))
	}
	return r.store(c).String()
}

// Branch points the branch name at the commit id.
func (r *Repo) Branch(name, id string) {
	r.t.Helper()
	require.NoError(r.t, r.Repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(name), plumbing.NewHash(id))))
}

// Tag tags the commit id: an annotated tag made at at, or when at is zero a lightweight one.
func (r *Repo) Tag(name, id string, at time.Time) {
	r.t.Helper()
	var opts *git.CreateTagOptions
	if !at.IsZero() {
		opts = &git.CreateTagOptions{Tagger: &object.Signature{Name: "Release", Email: "release@example.com", When: at}, Message: "release " + name}
	}
	_, err := r.Repo.CreateTag(name, plumbing.NewHash(id), opts)
	require.NoError(r.t, err)
}

// Story is the history the import tests share, built by BuildStory from a base time T (hours
// after T in brackets):
//
//	main:     c1 [1] ── c2 [2] ── c3 [11] ── m1 [13] ── c4 [25] ── c5 [30]
//	                     │                    │
//	feature:             └── f1 [10] ── f2 [12]
//	hotfix:   c1 ── h1 [3]   (on no branch but its tag's)
//
// Tags: v1.0.0 on c2 (annotated, made at 4), v1.1.0 on m1 (lightweight: m1's time, 13),
// v1.2.0 on c4 (annotated, made at 27), nightly-1 on c5 (lightweight), v0.9-hotfix on h1
// (annotated, made at 5, not on main).
type Story struct {
	Repo                               *Repo
	T                                  time.Time
	C1, C2, C3, F1, F2, M1, C4, C5, H1 string
}

// At is the time h hours after the story's base time.
func (s Story) At(h float64) time.Time { return s.T.Add(time.Duration(h * float64(time.Hour))) }

// BuildStory builds the Story at base time t.
func BuildStory(tb testing.TB, t time.Time) Story {
	tb.Helper()
	s := Story{Repo: New(tb), T: t}
	r := s.Repo
	s.C1 = r.Commit(s.At(1))
	s.C2 = r.Commit(s.At(2), s.C1)
	s.H1 = r.Commit(s.At(3), s.C1)
	s.F1 = r.Commit(s.At(10), s.C2)
	s.C3 = r.Commit(s.At(11), s.C2)
	s.F2 = r.Commit(s.At(12), s.F1)
	s.M1 = r.Commit(s.At(13), s.C3, s.F2)
	s.C4 = r.Commit(s.At(25), s.M1)
	s.C5 = r.Commit(s.At(30), s.C4)
	r.Branch("main", s.C5)
	r.Branch("feature", s.F2)
	r.Tag("v1.0.0", s.C2, s.At(4))
	r.Tag("v1.1.0", s.M1, time.Time{})
	r.Tag("v1.2.0", s.C4, s.At(27))
	r.Tag("nightly-1", s.C5, time.Time{})
	r.Tag("v0.9-hotfix", s.H1, s.At(5))
	return s
}
