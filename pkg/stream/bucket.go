package stream

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// AuthBucket is the key-value bucket of API keys and token revocations (pkg/auth's KeyRecord
// and UserRecord). The admin commands write it along with Postgres; the ingest watches it, so
// that verifying a key needs NATS only, like the rest of the write path.
const AuthBucket = "DEVOPSTIC_AUTH"

// EnsureAuthBucket creates the auth bucket, or updates it to replicas. It keeps one value per
// key: a key's history is in Postgres.
func EnsureAuthBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      AuthBucket,
		Description: "DevOpstic API keys and token revocations (hashes only)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("create or update key-value bucket %s: %w", AuthBucket, err)
	}
	return kv, nil
}
