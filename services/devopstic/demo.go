package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/scenario"
	"github.com/devopstic/devopstic/pkg/store"
)

// demo loads a generated delivery history (pkg/scenario) into a running DevOpstic over its
// HTTP API, so that the dashboards have something to show. Events carry ids, so running it
// twice on the same day adds nothing.
func demo(ctx context.Context, cfg config.AllInOne, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stdout)
	base := fs.String("url", "http://"+cfg.HTTP.Addr, "the DevOpstic to load")
	pipelines := fs.Int("pipelines", 8, "how many pipelines")
	days := fs.Int("days", 90, "how many days of history, ending today")
	seed := fs.Uint64("seed", 1, "the scenario's seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	user, password := cfg.Auth.Username, cfg.Auth.Password
	if user == "" && password == "" {
		user, password = "admin", "admin" // make run's local login
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	sc := scenario.Generate(scenario.Config{Seed: *seed, Pipelines: *pipelines, Start: today.AddDate(0, 0, -*days), Days: *days})
	events := sc.Events()

	client := &http.Client{Timeout: 30 * time.Second}
	token, err := login(ctx, client, *base, user, password)
	if err != nil {
		return err
	}
	for start := 0; start < len(events); start += 1000 {
		batch := events[start:min(start+1000, len(events))]
		if err := postBatch(ctx, client, *base, token, batch); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\rloaded %d of %d events", start+len(batch), len(events))
	}
	fmt.Fprintf(stdout, "\nloaded %d pipelines and %d days of history (%s to %s)\n", *pipelines, *days,
		sc.Config.Start.Format(time.DateOnly), sc.End().Format(time.DateOnly))
	if err := waitWritten(ctx, client, *base, token, len(events)); err != nil {
		return err
	}
	if err := demoTeams(ctx, cfg, sc, stdout); err != nil {
		fmt.Fprintf(stdout, "no demo teams (%v): make them with devopstic team create|add\n", err)
	}
	fmt.Fprintf(stdout, "\nOpen %s/ in a browser to see them (the login of make run).\n", *base)
	fmt.Fprintf(stdout, "Try: curl -s '%s/api/v1/metrics/dora?pipeline_id=%s' -H \"Authorization: Bearer $TOKEN\"\n", *base, sc.Pipelines[0].ID)
	return nil
}

// waitWritten waits until the writer has written at least n events and the count has stopped
// moving, so that what follows (the statistics, the page) sees the whole history.
func waitWritten(ctx context.Context, client *http.Client, base, token string, n int) error {
	last, still := -1, 0
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		out, err := call(ctx, client, http.MethodGet, base+"/events?limit=1", token, nil, http.StatusOK)
		if err != nil {
			return err
		}
		var page struct{ Count int }
		if err := json.Unmarshal(out, &page); err != nil {
			return fmt.Errorf("GET /events: %w", err)
		}
		if page.Count == last && page.Count >= n {
			if still++; still == 4 {
				return nil
			}
		} else {
			still = 0
		}
		last = page.Count
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("the writer has not written the %d events after 5 minutes (devopstic status says why)", n)
}

// demoTeams gives the demo's pipelines to three teams, leaving the last ones in none, so that
// the first page and the dashboards have teams to show. Teams that exist are kept, and a
// pipeline already in a team stays there.
func demoTeams(ctx context.Context, cfg config.AllInOne, sc scenario.Scenario, stdout io.Writer) error {
	st, closeStore, err := openStore(ctx, cfg, false, 2)
	if err != nil {
		return err
	}
	defer closeStore()
	teams := []string{"platform", "platform", "platform", "payments", "payments", "search"}
	for i, p := range sc.Pipelines[:min(len(teams), len(sc.Pipelines))] {
		if err := st.CreateTeam(ctx, teams[i]); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
		if _, err := st.AddPipeline(ctx, teams[i], p.ID, false); err != nil && !errors.Is(err, store.ErrOtherTeam) {
			return err
		}
	}
	fmt.Fprintln(stdout, "teams: platform, payments and search own the first six pipelines (devopstic team list)")
	// What autovacuum would do a minute from now: the page's team figures need the statistics.
	return st.Analyze(ctx)
}

func login(ctx context.Context, client *http.Client, base, user, password string) (string, error) {
	body, err := json.Marshal(map[string]string{"username": user, "password": password})
	if err != nil {
		return "", err
	}
	out, err := call(ctx, client, http.MethodPost, base+"/tokens", "", body, http.StatusOK)
	if err != nil {
		return "", fmt.Errorf("log in as %s (set DEVOPSTIC_USERNAME and DEVOPSTIC_PASSWORD): %w", user, err)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
		return "", errors.New("log in: no token in the answer")
	}
	return tok.Token, nil
}

func postBatch(ctx context.Context, client *http.Client, base, token string, batch []json.RawMessage) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return err
	}
	// A 503 (the stream briefly away) is worth a few retries: the events' ids make them safe.
	for attempt := 1; ; attempt++ {
		_, err = call(ctx, client, http.MethodPost, base+"/events", token, body, http.StatusAccepted)
		if err == nil || attempt == 5 || !strings.Contains(err.Error(), "503") {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
}

func call(ctx context.Context, client *http.Client, method, url, token string, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is DevOpstic running? start it with make run)", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, bytes.TrimSpace(out))
	}
	return out, nil
}
