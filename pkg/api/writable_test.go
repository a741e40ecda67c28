package api_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/api"
	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/cdevents"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/gitlab"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
	"github.com/devopstic/devopstic/pkg/writer"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Where FuzzAcceptedIsWritable sends a request: the native endpoint (JSON or NDJSON) or a
// webhook, each with what it needs to get past authentication and signature checks.
const (
	routeJSON = iota
	routeNDJSON
	routeGitHub
	routeGitLab
	routePagerDuty
	routeAlertmanager
	routeCDEvents       // structured mode; batched mode when the body is an array
	routeCDEventsBinary // name is ce-type, header ce-id
	routes
)

const (
	fuzzGitHubSecret    = "gh-fuzz"
	fuzzGitLabSecret    = "gl-fuzz"
	fuzzPagerDutySecret = "pd-fuzz"
	fuzzAlertToken      = "am-fuzz"
)

// writableEnv is an ingest in front of a real NATS server, and a real Postgres to write what it
// publishes into, as the writer would.
type writableEnv struct {
	app   *fiber.App
	token string
	js    jetstream.Stream
	store *store.Store
	seq   uint64 // the last stream sequence written
}

func newWritableEnv(t testing.TB) *writableEnv {
	ctx := context.Background()
	n := testenv.StartNATS(t) // with the stream, set up as in a deployment
	nc, err := stream.ConnectAs(n.URL, "fuzz-ingest", n.Login(stream.RoleIngest))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	pub, err := stream.NewPublisher(nc, 5*time.Second)
	require.NoError(t, err)
	// The messages are read back as the operator's commands read them.
	reader, err := stream.ConnectAs(n.URL, "fuzz-reader", n.Login(stream.RoleAdmin))
	require.NoError(t, err)
	t.Cleanup(reader.Close)
	js, err := jetstream.New(reader)
	require.NoError(t, err)
	s, err := js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	st, err := store.Open(ctx, testenv.Postgres(t), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)

	tokens := auth.NewTokens([]string{strings.Repeat("k", 40)}, time.Hour, time.Hour)
	token, _, err := tokens.Issue("fuzz", auth.RoleAdmin)
	require.NoError(t, err)
	app := api.New(api.Config{
		BodyLimit:          1 << 20,
		MaxBatch:           100,
		GitHubSecrets:      []string{fuzzGitHubSecret},
		GitLabSecrets:      []string{fuzzGitLabSecret},
		GitLab:             gitlab.Options{DeployPipelines: []string{"deploy"}},
		PagerDutySecrets:   []string{fuzzPagerDutySecret},
		AlertmanagerTokens: []string{fuzzAlertToken},
	}, api.Deps{Publisher: pub, Tokens: tokens, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return &writableEnv{app: app, token: token, js: s, store: st}
}

func hexMAC(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// request is what a client of route sends: name is the webhook's event header, header its
// delivery id (or idempotency key, webhook id), pipeline the ?pipeline_id= of its URL.
func request(route uint8, name, header, pipeline string, body []byte) *http.Request {
	path := map[uint8]string{
		routeJSON: "/events", routeNDJSON: "/events", routeGitHub: "/github/events", routeGitLab: "/gitlab/events",
		routePagerDuty: "/pagerduty/incidents", routeAlertmanager: "/alertmanager/alerts",
		routeCDEvents: "/cdevents", routeCDEventsBinary: "/cdevents",
	}[route%routes]
	if pipeline != "" {
		path += "?pipeline_id=" + url.QueryEscape(pipeline)
	}
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	switch route % routes {
	case routeNDJSON:
		req.Header.Set("Content-Type", "application/x-ndjson")
	case routeGitHub:
		req.Header.Set("X-GitHub-Event", name)
		req.Header.Set("X-GitHub-Delivery", header)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hexMAC(fuzzGitHubSecret, body))
	case routeGitLab:
		req.Header.Set("X-Gitlab-Event", name)
		req.Header.Set("X-Gitlab-Event-UUID", header)
		req.Header.Set("Idempotency-Key", header)
		req.Header.Set("X-Gitlab-Token", fuzzGitLabSecret)
	case routePagerDuty:
		req.Header.Set("X-Webhook-Id", header)
		req.Header.Set("X-PagerDuty-Signature", "v1="+hexMAC(fuzzPagerDutySecret, body))
	case routeAlertmanager:
		req.Header.Set("Authorization", "Bearer "+fuzzAlertToken)
	case routeCDEvents:
		req.Header.Set("Content-Type", cdevents.MediaStructured)
		if strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
			req.Header.Set("Content-Type", cdevents.MediaBatch)
		}
	case routeCDEventsBinary:
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Type", name)
		req.Header.Set("Ce-Id", header)
		req.Header.Set("Ce-Source", "/fuzz")
	}
	return req
}

// check sends one request and, when the ingest accepts it, maps and writes every message it
// published exactly as the writer does. Any failure there is a 202 that would be dead-lettered.
func (e *writableEnv) check(t *testing.T, req *http.Request) {
	if req.URL.Path == "/events" || req.URL.Path == "/cdevents" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.app.Test(req, -1)
	require.NoError(t, err)
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Less(t, resp.StatusCode, 500, "input is never a server error: %s", answer)
	if resp.StatusCode != http.StatusAccepted {
		return
	}
	ctx := context.Background()
	info, err := e.js.Info(ctx)
	require.NoError(t, err)
	var sets []fact.Set
	for ; e.seq < info.State.LastSeq; e.seq++ {
		m, err := e.js.GetMsg(ctx, e.seq+1)
		require.NoError(t, err)
		set, err := writer.Decode(m.Subject, m.Header, m.Data, m.Sequence)
		require.NoError(t, err, "accepted (%s), and the writer cannot decode it", answer)
		sets = append(sets, set)
	}
	require.NoError(t, e.store.Write(ctx, sets), "accepted (%s), and Postgres refuses it", answer)
}

func fixture(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// Whatever the ingest accepts, the writer decodes and Postgres stores: "202 means written". The
// seeds are the hostile cases found so far; `go test -fuzz FuzzAcceptedIsWritable ./pkg/api/`
// looks for more.
func FuzzAcceptedIsWritable(f *testing.F) {
	// Each with its own id: unknown fields are not part of a content id, and a duplicate is not
	// published again.
	seeds := 0
	commit := func(extra string) string {
		seeds++
		return fmt.Sprintf(`{"id":"seed-%d","type":"commit","pipeline_id":"api","commit_id":"abc","timestamp":1795600800%s}`, seeds, extra)
	}
	native := []string{
		commit(``),
		commit(`,"note":1e1000000`), // the reported one: 202, then "value overflows numeric format"
		commit(`,"note":1e131071`), commit(`,"note":1e131072`), commit(`,"note":9.9e131071`), commit(`,"note":10e131071`),
		commit(`,"note":0.1e131072`), commit(`,"note":0.1e131073`), commit(`,"note":-1e-16383`), commit(`,"note":1e-16384`),
		commit(`,"note":1.5e-16383`), commit(`,"note":100e-16384`), commit(`,"note":0e-16383`), commit(`,"note":0e-16384`),
		commit(`,"note":0e999999999`), commit(`,"note":0e1073741823`), commit(`,"note":1E+0000000000000000000000001`),
		commit(`,"note":` + strings.Repeat("9", 131072)), commit(`,"note":` + strings.Repeat("9", 131073)),
		commit(`,"note":0.` + strings.Repeat("0", 16382) + `1`), commit(`,"note":0.` + strings.Repeat("0", 16383) + `1`),
		commit(`,"note":"\u0000"`), commit(`,"\u0000":1`), commit(`,"note":"\\u0000"`), commit(`,"note":"\ud800"`),
		commit(`,"note":"\udc00"`), commit(`,"note":"\ud83d\ude00"`), commit(`,"note":"\ud83d\u0041"`),
		commit(`,"note":"` + "\xff" + `"`), commit(`,"note":"` + "\xed\xa0\x80" + `"`),
		`{"type":"commit","pipeline_id":"api\u0000","commit_id":"a"}`, `{"type":"commit","pipeline_id":"api","commit_id":"a\ud800"}`,
		`{"id":"run-1","type":"commit","pipeline_id":"api","commit_id":"a"}`,
		commit(`,"note":` + strings.Repeat("[", 512) + strings.Repeat("]", 512)),
		commit(`,"note":` + strings.Repeat("[", 513) + strings.Repeat("]", 513)),
		commit(`,"note":` + strings.Repeat(`{"a":`, 512) + `1` + strings.Repeat("}", 512)),
		`[` + commit(`,"n":1`) + `,` + commit(`,"n":-1E+999999`) + `]`,
	}
	for _, body := range native {
		f.Add(uint8(routeJSON), "", "", "", []byte(body))
	}
	f.Add(uint8(routeNDJSON), "", "", "", []byte(commit(``)+"\n"+commit(`,"n":1e-99999`)+"\n"))

	push := fixture(f, "../github/testdata/push/single-commit.json")
	gitlabPush := fixture(f, "../gitlab/testdata/push_hook.json")
	incident := fixture(f, "../pagerduty/testdata/incident.triggered.json")
	firing := fixture(f, "../alertmanager/testdata/firing.json")
	for _, header := range []string{"72d3162e-cc78-11e3-81ab-4c9367dc0958", "\xff\xfe", "a\x00b", "a\x01b", "\xed\xa0\x80", strings.Repeat("d", 200)} {
		f.Add(uint8(routeGitHub), "push", header, "", []byte(push))
		f.Add(uint8(routeGitLab), "Push Hook", header, "", []byte(gitlabPush))
		f.Add(uint8(routePagerDuty), "", header, "", []byte(incident))
	}
	for _, pipeline := range []string{"acme/api", "a\x00b", "\xff", "é"} {
		f.Add(uint8(routeGitHub), "push", "d-1", pipeline, []byte(push))
		f.Add(uint8(routeGitLab), "Push Hook", "u-1", pipeline, []byte(gitlabPush))
		f.Add(uint8(routePagerDuty), "", "w-1", pipeline, []byte(incident))
		f.Add(uint8(routeAlertmanager), "", "", pipeline, []byte(firing))
	}
	f.Add(uint8(routeGitHub), "push", "d-2", "", []byte(strings.Replace(push, `"size":`, `"huge":1e1000000,"size":`, 1)))
	f.Add(uint8(routeGitLab), "Push Hook", "u-2", "", []byte(strings.Replace(gitlabPush, `"before"`, `"x":"\u0000","before"`, 1)))
	f.Add(uint8(routePagerDuty), "", "w-2", "", []byte(strings.Replace(incident, `"event"`, `"x":-0.5e-99999,"event"`, 1)))
	f.Add(uint8(routeAlertmanager), "", "", "", []byte(strings.Replace(firing, `"status"`, `"x":"\udfff","status"`, 1)))

	deployed := fixture(f, "../cdevents/testdata/v0.5/service_deployed.json")
	detected := fixture(f, "../cdevents/testdata/v0.4/incident_detected.json")
	structured := func(cd string) string {
		return `{"specversion":"1.0","id":"f-1","source":"/fuzz","type":"dev.cdevents.service.deployed.0.3.0","data":` + cd + `}`
	}
	for _, pipeline := range []string{"", "a\x00b", "\xff"} {
		f.Add(uint8(routeCDEvents), "", "", pipeline, []byte(structured(deployed)))
		f.Add(uint8(routeCDEventsBinary), "dev.cdevents.incident.detected.0.2.0", "f-2", pipeline, []byte(detected))
	}
	for _, header := range []string{"a\x00b", "a\x01b", "\xff", strings.Repeat("d", 1000)} {
		f.Add(uint8(routeCDEventsBinary), "dev.cdevents.service.deployed.0.3.0", header, "", []byte(deployed))
		f.Add(uint8(routeCDEventsBinary), "dev.cdevents.service.deployed"+header, "f-3", "", []byte(deployed))
	}
	f.Add(uint8(routeCDEvents), "", "", "", []byte(structured(strings.Replace(deployed, "test123", `\u0000`, 1))))
	f.Add(uint8(routeCDEvents), "", "", "", []byte(structured(strings.Replace(deployed, `"environment"`, `"x":1e1000000,"environment"`, 1))))
	f.Add(uint8(routeCDEvents), "", "", "", []byte(strings.Replace(structured(deployed), `"f-1"`, `"\ud800"`, 1)))
	f.Add(uint8(routeCDEvents), "", "", "", []byte("["+structured(deployed)+","+strings.Replace(structured(detected), "service.deployed.0.3.0", "incident.detected.0.2.0", 1)+"]"))
	f.Add(uint8(routeCDEventsBinary), "dev.cdevents.service.deployed.0.3.0", "f-4", "", []byte(strings.Replace(deployed, "mySubject123", "\xed\xa0\x80", 1)))

	env := newWritableEnv(f)
	f.Fuzz(func(t *testing.T, route uint8, name, header, pipeline string, body []byte) {
		if len(name)+2*len(header)+3*len(pipeline) > 3<<10 {
			t.Skip("headers over the server's 4 KiB read buffer never reach a handler")
		}
		env.check(t, request(route, name, header, pipeline, body))
	})
}
