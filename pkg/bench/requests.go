package bench

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/stream"
)

// githubPayload is GitHub's documented pull_request "opened" delivery (testdata/SOURCES.md of
// pkg/github says where it comes from), as GitHub sends it.
//
//go:embed testdata/github-pull_request-opened.json
var githubPayload []byte

// githubRequest makes signed POST /github/events deliveries of githubPayload, each with its
// own X-GitHub-Delivery so that none is a duplicate.
func githubRequest(base string) requestFunc {
	mac := hmac.New(sha256.New, []byte(githubSecret))
	mac.Write(githubPayload)
	signature := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	run := time.Now().UnixNano()
	return func(w, i int) (*http.Request, int) {
		req, err := http.NewRequest(http.MethodPost, base+"/github/events", bytes.NewReader(githubPayload))
		if err != nil {
			panic(err) // the URL is ours and valid
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d-%d-%d", run, w, i))
		req.Header.Set("X-Hub-Signature-256", signature)
		return req, 1
	}
}

// nativeMessages are raws as the ingest publishes them (pkg/api): on the event's subject, with
// its id as Nats-Msg-Id.
func nativeMessages(raws [][]byte, received time.Time) ([]stream.Message, error) {
	msgs := make([]stream.Message, len(raws))
	for i, raw := range raws {
		e, err := event.Decode(raw, received)
		if err != nil {
			return nil, fmt.Errorf("generated event does not decode: %w", err)
		}
		msgs[i] = stream.Message{Subject: stream.Subject(event.Source, e.Type), ID: e.ID, Data: raw, ReceivedAt: received}
	}
	return msgs, nil
}
