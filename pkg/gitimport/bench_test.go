package gitimport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/devopstic/devopstic/pkg/gitimport"
	"github.com/devopstic/devopstic/pkg/gitimport/gitimporttest"
)

// BenchmarkImportGit100k reads, plans and turns into events a history of 100,000 commits
// (a merge of a two-commit branch every tenth commit, a release tag every thousand), reporting
// commits per second. Building the repository takes a while and is not timed.
//
//	go test -run '^$' -bench ImportGit100k -benchtime 1x ./pkg/gitimport/
func BenchmarkImportGit100k(b *testing.B) {
	const commits = 100_000
	r := gitimporttest.New(b)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tip := r.Commit(at)
	for i := 1; i < commits; {
		at = at.Add(time.Minute)
		if i%10 == 0 && i+3 <= commits {
			f1 := r.Commit(at, tip)
			f2 := r.Commit(at.Add(10*time.Second), f1)
			tip = r.Commit(at.Add(20*time.Second), tip, f2)
			i += 3
		} else {
			tip = r.Commit(at, tip)
			i++
		}
		if i%1000 == 0 {
			r.Tag(fmt.Sprintf("v%d", i/1000), tip, at.Add(30*time.Second))
		}
	}
	r.Branch("main", tip)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		h, err := gitimport.Read(context.Background(), r.Dir, "main")
		if err != nil {
			b.Fatal(err)
		}
		read := time.Since(start)
		p := gitimport.MakePlan(h, gitimport.Deploys{TagGlob: "v*"}, gitimport.Window{})
		events, err := gitimport.Events(p, "api", "production")
		if err != nil {
			b.Fatal(err)
		}
		if len(h.Commits) != commits || len(p.Deployments) == 0 {
			b.Fatalf("read %d commits, planned %d deployments", len(h.Commits), len(p.Deployments))
		}
		b.ReportMetric(float64(len(h.Commits))/time.Since(start).Seconds(), "commits/s")
		b.ReportMetric(float64(len(h.Commits))/read.Seconds(), "commits-read/s")
		b.ReportMetric(float64(len(events)), "events")
	}
}
