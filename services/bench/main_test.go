package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const benchPkg = "github.com/devopstic/devopstic/pkg/bench"

// The binaries the images ship link none of the benchmark: only this command does.
func TestProductionBinariesCarryNoBenchmark(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`,
		"./services/devopstic", "./services/ingest", "./services/writer", "./services/bench")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	deps := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		deps[fields[0]] = fields[1:]
	}
	for _, service := range []string{"devopstic", "ingest", "writer"} {
		pkg := "github.com/devopstic/devopstic/services/" + service
		require.Contains(t, deps, pkg)
		require.NotContains(t, deps[pkg], benchPkg, "%s links the benchmark", service)
	}
	require.Contains(t, deps["github.com/devopstic/devopstic/services/bench"], benchPkg, "the check would see pkg/bench")
}

func TestRunRefusesBadFlagsBeforeStartingAnything(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-scale", "0"}, &bytes.Buffer{}, &stderr)
	require.ErrorContains(t, err, "-scale must be positive")
	err = run(context.Background(), []string{"-ingest", "/nonexistent/ingest"}, &bytes.Buffer{}, &stderr)
	require.ErrorContains(t, err, "make build")
	require.NoError(t, run(context.Background(), []string{"-h"}, &bytes.Buffer{}, &stderr))
	require.Contains(t, stderr.String(), "-baseline-label")
}
