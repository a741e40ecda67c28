package stream

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded NATS server with JetStream.
type ServerConfig struct {
	// StoreDir holds JetStream's file store; it survives restarts.
	StoreDir string
	// Host and Port to listen on; Port -1 picks a free port.
	Host string
	Port int
	// SyncInterval is how often the file store is flushed to disk (NATS's default: 2 minutes).
	// SyncAlways flushes on every write instead: no acknowledged message is lost on power
	// loss, at a cost measured in BenchmarkPublish.
	SyncInterval time.Duration
	SyncAlways   bool
	// MaxPayload is the largest message the server takes, headers included (its max_payload);
	// 0 is NATS's default, 1 MiB. The all-in-one sets it to its body limit plus HeaderRoom.
	MaxPayload int32
	// Passwords of the roles' users (ServerUsers): required, as no client connects without
	// credentials.
	Passwords Passwords
}

// RunServer starts an embedded NATS server with JetStream and waits until it accepts
// connections. Stop it with Shutdown and WaitForShutdown.
func RunServer(cfg ServerConfig) (*server.Server, error) {
	users, err := ServerUsers(cfg.Passwords)
	if err != nil {
		return nil, fmt.Errorf("configure embedded NATS: %w", err)
	}
	opts := &server.Options{
		ServerName:   "devopstic",
		Host:         cfg.Host,
		Port:         cfg.Port,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncInterval: cfg.SyncInterval,
		SyncAlways:   cfg.SyncAlways,
		MaxPayload:   cfg.MaxPayload,
		NoSigs:       true,
		NoLog:        true,
		// The embedded server serves one process (or a test): keep its memory modest.
		JetStreamMaxMemory: 256 << 20,
		Users:              users,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start within 30s (store %s, %s:%d)", cfg.StoreDir, cfg.Host, cfg.Port)
	}
	return ns, nil
}
