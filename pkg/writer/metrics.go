package writer

import "github.com/devopstic/devopstic/pkg/metrics"

// Metrics are the writer's series. The zero value (nil series) counts nothing.
type Metrics struct {
	// Written counts messages written to Postgres and acknowledged.
	Written *metrics.Counter
	// Batches counts batches fetched from the stream and settled.
	Batches *metrics.Counter
	// DeadLettered counts messages saved in dead_letters and terminated.
	DeadLettered *metrics.Counter
	// Retries counts writes retried after a transient failure (Postgres down, a deadlock).
	Retries *metrics.Counter
	// LastBatchSize is the number of messages in the last batch fetched.
	LastBatchSize *metrics.Gauge
}

// NewMetrics registers the writer's series in reg.
func NewMetrics(reg *metrics.Registry) *Metrics {
	return &Metrics{
		Written:       reg.Counter("devopstic_writer_messages_written_total", "Messages written to Postgres and acknowledged."),
		Batches:       reg.Counter("devopstic_writer_batches_total", "Batches fetched from the stream and settled."),
		DeadLettered:  reg.Counter("devopstic_writer_dead_lettered_total", "Messages saved in dead_letters and terminated."),
		Retries:       reg.Counter("devopstic_writer_transient_retries_total", "Writes retried after a transient failure (Postgres unavailable, a deadlock)."),
		LastBatchSize: reg.Gauge("devopstic_writer_last_batch_size", "Messages in the last batch fetched from the stream."),
	}
}
