package writer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/devopstic/devopstic/pkg/stream"
)

// Metrics are the writer's series. NewMetrics(nil) makes series that count into no registry.
type Metrics struct {
	// Written counts messages written to Postgres and acknowledged.
	Written prometheus.Counter
	// Batches counts batches fetched from the stream and settled.
	Batches prometheus.Counter
	// DeadLettered counts messages saved in dead_letters and terminated.
	DeadLettered prometheus.Counter
	// Retries counts writes retried after a transient failure (Postgres down, a deadlock).
	Retries prometheus.Counter
	// LastBatchSize is the number of messages in the last batch fetched.
	LastBatchSize prometheus.Gauge
	// Deferred counts full batches, whose derivation was queued.
	Deferred prometheus.Counter
	// Derived counts the keys (commits, deployment attempts, incidents) derived from the queue.
	Derived prometheus.Counter

	// The backlog and the lag are read from NATS at each scrape (Collect) rather than kept up
	// to date: the consumer's counts change with every publish, which the writer does not see.
	js atomic.Pointer[jetstream.JetStream] // nil until Watch
	// position is when the stream took the oldest message of the batch in hand, or of the
	// last batch (Unix nanoseconds); the metrics' creation time before the first batch, so that
	// a writer that cannot start still shows a lag that grows.
	position atomic.Int64
	holding  atomic.Bool // a batch is being written
}

var (
	backlogDesc = prometheus.NewDesc("devopstic_stream_backlog_messages",
		"Events in the stream not written yet: the writer consumer's messages not yet delivered or awaiting acknowledgement.", nil, nil)
	lagDesc = prometheus.NewDesc("devopstic_writer_lag_seconds",
		"Seconds since the stream took the oldest event of the batch this writer is writing (or wrote last, while events wait undelivered); 0 once it has caught up.", nil, nil)
)

// scrapeTimeout bounds the request to NATS that a scrape makes.
const scrapeTimeout = 2 * time.Second

// NewMetrics registers the writer's series in reg (none when reg is nil). The backlog and the
// lag are absent until Watch.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &Metrics{
		Written:       counter("devopstic_writer_messages_written_total", "Messages written to Postgres and acknowledged."),
		Batches:       counter("devopstic_writer_batches_total", "Batches fetched from the stream and settled."),
		DeadLettered:  counter("devopstic_writer_dead_lettered_total", "Messages saved in dead_letters and terminated."),
		Retries:       counter("devopstic_writer_transient_retries_total", "Writes retried after a transient failure (Postgres unavailable, a deadlock)."),
		LastBatchSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "devopstic_writer_last_batch_size", Help: "Messages in the last batch fetched from the stream."}),
		Deferred:      counter("devopstic_writer_deferred_batches_total", "Full batches (the writer is behind) whose derived facts were queued, to be derived once caught up."),
		Derived:       counter("devopstic_writer_derived_keys_total", "Commits, deployment attempts and incidents derived from the queue that full batches, replays and rebuilds leave."),
	}
	m.position.Store(time.Now().UnixNano())
	if reg != nil {
		reg.MustRegister(m.Written, m.Batches, m.DeadLettered, m.Retries, m.LastBatchSize, m.Deferred, m.Derived, backlog{m})
	}
	return m
}

// Watch makes the backlog and the lag read the writer consumer through js from now on.
func (m *Metrics) Watch(js jetstream.JetStream) {
	if m != nil {
		m.js.Store(&js)
	}
}

// fetched notes a batch taken from the stream, before it is written.
func (m *Metrics) fetched(batch []jetstream.Msg) {
	m.LastBatchSize.Set(float64(len(batch)))
	var oldest time.Time
	for _, msg := range batch {
		if meta, err := msg.Metadata(); err == nil && (oldest.IsZero() || meta.Timestamp.Before(oldest)) {
			oldest = meta.Timestamp
		}
	}
	if !oldest.IsZero() {
		m.position.Store(oldest.UnixNano())
	}
	m.holding.Store(true)
}

// settled notes that every message of the batch fetched last is acknowledged, handed back or
// dead-lettered.
func (m *Metrics) settled() {
	m.holding.Store(false)
	m.Batches.Inc()
}

// backlog collects devopstic_stream_backlog_messages and devopstic_writer_lag_seconds with one
// request to NATS (the consumer's info). Both are left out while the consumer does not exist
// yet, and when NATS does not answer (the scrape then reports the error).
type backlog struct{ m *Metrics }

func (b backlog) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogDesc
	ch <- lagDesc
}

func (b backlog) Collect(ch chan<- prometheus.Metric) {
	js := b.m.js.Load()
	if js == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	cons, err := (*js).Consumer(ctx, stream.StreamName, stream.ConsumerName)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return // the first writer to start has not created it yet
	}
	if err != nil {
		err = fmt.Errorf("consumer %s: %w", stream.ConsumerName, err)
		ch <- prometheus.NewInvalidMetric(backlogDesc, err)
		ch <- prometheus.NewInvalidMetric(lagDesc, err)
		return
	}
	info := cons.CachedInfo()
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(info.NumPending)+float64(info.NumAckPending))
	// A writer between batches while events wait undelivered is behind by as much as its
	// last batch was; an idle writer beside busy ones (their batches only await acks) is not.
	lag := 0.0
	if b.m.holding.Load() || info.NumPending > 0 {
		lag = max(0, time.Since(time.Unix(0, b.m.position.Load())).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, lag)
}
