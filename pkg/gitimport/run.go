package gitimport

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/devopstic/devopstic/pkg/importer"
	"github.com/devopstic/devopstic/pkg/stream"
)

// sendBatch is how many events go to the sink at once: one progress step.
const sendBatch = 500

// Import reads the repository, prints what it found to out, and sends the plan's events to
// sink, reporting to progress. now stamps the messages' receive time.
func Import(ctx context.Context, opts Options, sink importer.Sink, out io.Writer, progress *importer.Progress, now func() time.Time) (Result, error) {
	if opts.Pipeline == "" {
		return Result{}, fmt.Errorf("%w: --pipeline is required: the pipeline (service) the history belongs to, "+
			"the same pipeline_id as its live events (for GitHub webhooks, the repository's owner/name)", ErrInvalid)
	}
	h, err := Read(ctx, opts.Dir, opts.Branch)
	if err != nil {
		return Result{}, err
	}
	plan := MakePlan(h, opts.Deploys, opts.Window)
	fmt.Fprintf(out, "%s", Summary(h, plan, opts.Deploys, opts.Window))
	bodies, err := Events(plan, opts.Pipeline, opts.Environment)
	if err != nil {
		return Result{}, err
	}
	res := Result{History: h, Plan: plan}
	received := now().UTC()
	for start := 0; start < len(bodies); start += sendBatch {
		chunk := bodies[start:min(start+sendBatch, len(bodies))]
		msgs := make([]stream.Message, len(chunk))
		for i, b := range chunk {
			if msgs[i], err = importer.Native(b, received, Importer); err != nil {
				return res, err
			}
		}
		if err := sink.Send(ctx, msgs); err != nil {
			return res, err
		}
		res.Events += len(msgs)
		progress.Show(fmt.Sprintf("%d of %d events sent", res.Events, len(bodies)), float64(res.Events)/float64(len(bodies)), false)
	}
	progress.Show(fmt.Sprintf("%d events sent (%d commits, %d deployments)", res.Events, len(plan.Changes), len(plan.Deployments)), 1, true)
	return res, nil
}
