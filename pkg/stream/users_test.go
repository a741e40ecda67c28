package stream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// connect connects to n as role; the channel receives the connection's asynchronous errors (a
// refused publish or subscription comes as one).
func connect(t *testing.T, n *testenv.NATS, role stream.Role) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 100)
	nc, err := nats.Connect(n.URL, append(n.Login(role).Options(), nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc, errs
}

// refused waits for the server to refuse a publish or subscription to subject.
func refused(t *testing.T, errs <-chan error, subject string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
			t.Logf("another asynchronous error: %v", err)
		case <-timeout:
			t.Fatalf("NATS did not refuse %s", subject)
		}
	}
}

// noViolation fails the test if the connection's work so far was refused anywhere.
func noViolation(t *testing.T, errs <-chan error) {
	t.Helper()
	for {
		select {
		case err := <-errs:
			t.Errorf("asynchronous NATS error: %v", err)
		default:
			return
		}
	}
}

func TestAnonymousClientIsRefused(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATS(t) // with the stream and the auth bucket, set up by the admin
	_, err := nats.Connect(s.URL)
	require.ErrorIs(t, err, nats.ErrAuthorization)
	_, err = nats.Connect(s.URL, nats.UserInfo(stream.RoleAdmin.User(), "not-the-password"))
	require.ErrorIs(t, err, nats.ErrAuthorization)

	// A service configured without credentials, or with wrong ones, is told what to set.
	login := stream.Login{Role: stream.RoleIngest, User: "devopstic-ingest", Password: "wrong"}
	nc, err := stream.ConnectAs(s.URL, "test", login)
	require.NoError(t, err) // it keeps trying in the background, as it does while NATS is down
	defer nc.Close()
	// The connection's last error changes with each attempt to reconnect: keep the refusal
	// seen rather than read it again.
	require.Eventually(t, func() bool { err = login.Refused(nc, nil); return err != nil }, 10*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, err, stream.ErrCredentialsRefused)
	require.ErrorContains(t, err, "NATS refused the credentials of user devopstic-ingest: set DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD")
}

// The ingest publishes events and reads the auth bucket, and can do nothing that would write
// the bucket: neither put into it, nor reshape its stream or the event stream so that the
// server writes it for them.
func TestIngestCannotWriteTheAuthBucket(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATS(t)
	admin, _ := connect(t, s, stream.RoleAdmin)
	adminJS, err := jetstream.New(admin)
	require.NoError(t, err)
	ctx := context.Background()
	kv, err := adminJS.KeyValue(ctx, stream.AuthBucket)
	require.NoError(t, err)

	nc, errs := connect(t, s, stream.RoleIngest)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	// Its own work: publish an event, watch the bucket, look the stream up.
	pub, err := stream.NewPublisher(nc, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ctx, []stream.Message{{Subject: stream.Subject("native", "deploy"), ID: "1", Data: []byte(`{}`), ReceivedAt: time.Now()}}))
	_, err = js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	ingestKV, err := js.KeyValue(ctx, stream.AuthBucket)
	require.NoError(t, err)
	w, err := ingestKV.WatchAll(ctx)
	require.NoError(t, err)
	_, err = kv.Put(ctx, "apikey.real", []byte(`{"id":1}`))
	require.NoError(t, err)
	for e := range w.Updates() {
		if e != nil && e.Key() == "apikey.real" {
			break
		}
	}
	require.NoError(t, w.Stop())
	noViolation(t, errs)

	// A put into the bucket.
	forged := "$KV." + stream.AuthBucket + ".apikey.forged"
	require.NoError(t, nc.Publish(forged, []byte(`{"id":2,"name":"forged","scopes":["events:write"]}`)))
	refused(t, errs, forged)
	// The bucket's stream reshaped, say to republish events into the bucket.
	republish := &jetstream.RePublish{Source: stream.SubjectPrefix + ".forge.*", Destination: "$KV." + stream.AuthBucket + ".apikey.{{wildcard(1)}}"}
	go func() {
		cfg := jetstream.StreamConfig{Name: "KV_" + stream.AuthBucket, Subjects: []string{"$KV." + stream.AuthBucket + ".>"}, AllowRollup: true, DenyDelete: true, MaxMsgsPerSubject: 1}
		_, _ = js.UpdateStream(ctx, cfg)
	}()
	refused(t, errs, "$JS.API.STREAM.UPDATE.KV_"+stream.AuthBucket)
	// The event stream reshaped to do the same, or a stream of its own made to.
	for _, name := range []string{stream.StreamName, "FORGE"} {
		spec := stream.Spec(stream.Config{Duplicates: time.Hour})
		spec.Name, spec.RePublish = name, republish
		if name != stream.StreamName {
			spec.Subjects = []string{"forge.>"}
		}
		go func() { _, _ = js.CreateOrUpdateStream(ctx, spec) }()
		refused(t, errs, "$JS.API.STREAM.UPDATE."+name)
		go func() { _, _ = js.CreateStream(ctx, spec) }()
		refused(t, errs, "$JS.API.STREAM.CREATE."+name)
	}
	// Nor may it delete or purge what it publishes to.
	go func() { _ = js.DeleteStream(ctx, stream.StreamName) }()
	refused(t, errs, "$JS.API.STREAM.DELETE."+stream.StreamName)

	// Nothing reached the bucket: a put after the attempts is its only new entry.
	_, err = kv.Put(ctx, "apikey.after", []byte(`{"id":3}`))
	require.NoError(t, err)
	keys, err := kv.ListKeys(ctx)
	require.NoError(t, err)
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	require.ElementsMatch(t, []string{"apikey.real", "apikey.after"}, got)
	str, err := adminJS.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	require.Nil(t, str.CachedInfo().Config.RePublish)
}

// The writer consumes through its durable consumer, and may not publish events nor read the
// ingest's replies.
func TestWriterOnlyConsumes(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATS(t)
	ctx := context.Background()
	ingest, _ := connect(t, s, stream.RoleIngest)
	pub, err := stream.NewPublisher(ingest, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ctx, []stream.Message{{Subject: stream.Subject("native", "deploy"), ID: "1", Data: []byte(`{}`), ReceivedAt: time.Now()}}))

	nc, errs := connect(t, s, stream.RoleWriter)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	cons, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{AckWait: 30 * time.Second, MaxAckPending: 100})
	require.NoError(t, err)
	_, err = cons.Info(ctx)
	require.NoError(t, err)
	it, err := cons.Messages()
	require.NoError(t, err)
	m, err := it.Next()
	require.NoError(t, err)
	require.NoError(t, m.InProgress())
	require.NoError(t, m.DoubleAck(ctx))
	it.Stop()
	noViolation(t, errs)

	subject := stream.Subject("native", "deploy")
	require.NoError(t, nc.Publish(subject, []byte(`{}`)))
	refused(t, errs, subject)
	_, err = nc.SubscribeSync(stream.RoleIngest.InboxPrefix() + ".>")
	require.NoError(t, err) // the server's answer comes later
	refused(t, errs, stream.RoleIngest.InboxPrefix()+".>")
	// Another consumer, say one that would not acknowledge what the writer skipped.
	go func() {
		_, _ = js.CreateOrUpdateConsumer(ctx, stream.StreamName, jetstream.ConsumerConfig{Durable: "other", AckPolicy: jetstream.AckNonePolicy})
	}()
	refused(t, errs, "$JS.API.CONSUMER.CREATE."+stream.StreamName+".other")

	admin, _ := connect(t, s, stream.RoleAdmin)
	adminJS, err := jetstream.New(admin)
	require.NoError(t, err)
	str, err := adminJS.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "only the ingest's event")
}

// Why no role but admin may shape a stream: whoever may update the event stream may make the
// server republish events into the auth bucket, where they are API keys. Shown with the admin,
// who may.
func TestStreamUpdateCanWriteTheAuthBucket(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATS(t)
	ctx := context.Background()
	nc, _ := connect(t, s, stream.RoleAdmin)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	spec := stream.Spec(stream.Config{Duplicates: time.Hour})
	spec.RePublish = &jetstream.RePublish{Source: stream.SubjectPrefix + ".forge.*", Destination: "$KV." + stream.AuthBucket + ".apikey.{{wildcard(1)}}"}
	_, err = js.UpdateStream(ctx, spec)
	require.NoError(t, err)
	_, err = js.Publish(ctx, stream.SubjectPrefix+".forge.h", []byte(`{"id":9,"name":"forged","scopes":["events:write"]}`))
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, stream.AuthBucket)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		e, err := kv.Get(ctx, "apikey.h")
		return err == nil && strings.Contains(string(e.Value()), "forged")
	}, 10*time.Second, 5*time.Millisecond)
}
