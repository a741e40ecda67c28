package bench

import (
	"fmt"
	"io"
	"strings"
)

// Print writes rows as a Markdown table, under a header saying how they were measured.
func Print(w io.Writer, rows []Row, scale float64, cores int) {
	fmt.Fprintf(w, "\nDevOpstic benchmark at scale %g on %d cores. The load generator, the NATS server and Postgres\n", scale, cores)
	fmt.Fprintf(w, "share these cores with the ingest and writer processes: read each figure against the ceiling\n")
	fmt.Fprintf(w, "or baseline measured beside it in this run.\n\n")
	fmt.Fprintln(w, "| figure | measured | ceiling / baseline | ratio | target | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", cell(r.Figure), cell(r.Measured), cell(r.Baseline), cell(r.Ratio),
			cell(r.Target), cell(r.Verdict))
	}
}
