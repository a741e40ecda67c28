package stream

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Setup creates the event stream and the auth bucket, or updates them to cfg. It needs the
// admin's credentials: the ingest and the writer may not shape streams (see Role.Permissions),
// they wait for Setup to have run. The all-in-one runs it for its embedded server; with an
// external NATS, `devopstic migrate` does.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		return err
	}
	_, err := EnsureAuthBucket(ctx, js, cfg.Replicas)
	return err
}
