package event

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/devopstic/devopstic/pkg/fact"
)

// Source is the source name of native events in the tables and on the stream.
const Source = "native"

// Facts maps a decoded native event to the rows it contributes. raw is the event as the client
// sent it, kept as the payload; receivedAt and seq come from the stream message.
func Facts(e Event, raw json.RawMessage, receivedAt time.Time, seq uint64) fact.Set {
	set := fact.Set{Event: fact.Event{
		ID:            e.ID,
		Source:        Source,
		Kind:          e.Type,
		PipelineID:    e.PipelineID,
		Environment:   e.Environment,
		CommitID:      e.CommitID,
		Commits:       e.Commits,
		IncidentID:    e.IncidentID,
		DeploymentID:  e.DeploymentID,
		PullRequestID: e.PullRequestID,
		Status:        e.Status,
		OccurredAt:    e.Timestamp,
		TimeInferred:  e.TimeInferred,
		ReceivedAt:    receivedAt.UTC(),
		StreamSeq:     seq,
		Payload:       raw,
	}}
	at := e.Timestamp
	change := fact.Change{PipelineID: e.PipelineID, CommitID: e.CommitID, PullRequestID: e.PullRequestID}

	switch e.Type {
	case TypeCommit:
		change.CommittedAt = &at
		set.Changes = []fact.Change{change}
	case TypeSubmit:
		change.SubmittedAt = &at
		set.Changes = []fact.Change{change}
	case TypeApprove:
		change.ApprovedAt = &at
		set.Changes = []fact.Change{change}
	case TypeDeploy:
		key := e.DeploymentID
		if key == "" {
			key = e.ID
		}
		shipped := append([]string{e.CommitID}, e.Commits...)
		slices.Sort(shipped)
		shipped = slices.Compact(shipped)
		set.Deployments = []fact.Deployment{{
			Source:       Source,
			PipelineID:   e.PipelineID,
			Environment:  e.Environment,
			Key:          key,
			DeploymentID: e.DeploymentID,
			Status:       e.Status,
			DeployedAt:   at,
			CommitID:     e.CommitID,
			Commits:      shipped,
			EventID:      e.ID,
		}}
		// A shipped commit is a tracked change even before anything else is known about it.
		for _, c := range shipped {
			set.Changes = append(set.Changes, fact.Change{PipelineID: e.PipelineID, CommitID: c})
		}
	case TypeIncidentStatus:
		inc := fact.Incident{
			Source:            Source,
			IncidentID:        e.IncidentID,
			PipelineID:        e.PipelineID,
			Environment:       e.Environment,
			CauseDeploymentID: e.DeploymentID,
			CauseCommitID:     e.CommitID,
		}
		if e.Status == StatusFailure {
			inc.OpenedAt = &at
		} else {
			inc.ResolvedAt = &at
		}
		set.Incidents = []fact.Incident{inc}
	}
	return set
}
