//go:build uicheck

package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"
)

// TestUICheck is `make ui-check`: the first page in a real browser. It starts `make run` (its
// own data directory and ports, so a running `make run` is left alone), loads the demo history
// with `make demo`, logs in through the form in headless Chromium, and fails when the page shows
// an error, a figure is missing, the stylesheet was refused or the page is wider than a phone.
// Screenshots go to .data/ui-check-desktop.png, -top.png (docs/first-page.png) and -phone.png.
func TestUICheck(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dataDir := filepath.Join(root, ".data", "ui-check")
	require.NoError(t, os.RemoveAll(dataDir))
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	env := append(withoutDatabaseURL(os.Environ()),
		"DEVOPSTIC_DATA_DIR="+dataDir, "DEVOPSTIC_HTTP_ADDR="+httpAddr, "DEVOPSTIC_EMBEDDED_NATS_ADDR="+natsAddr,
		"DEVOPSTIC_USERNAME=", "DEVOPSTIC_PASSWORD=")

	// make run, in a process group of its own: Ctrl-C (SIGINT) to the group stops it cleanly,
	// its Postgres included.
	run := exec.Command("make", "--no-print-directory", "run")
	run.Dir, run.Env = root, env
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := run.StdoutPipe()
	require.NoError(t, err)
	run.Stderr = os.Stderr
	require.NoError(t, run.Start())
	stopped := make(chan error, 1)
	t.Cleanup(func() {
		_ = syscall.Kill(-run.Process.Pid, syscall.SIGINT)
		select {
		case err := <-stopped:
			t.Logf("make run stopped: %v", err)
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			t.Error("make run did not stop within 60s of SIGINT")
		}
	})
	base := make(chan string, 1)
	go func() {
		welcome := regexp.MustCompile(`Open the page:\s+(\S+)/`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(os.Stdout, "make run |", sc.Text())
			if m := welcome.FindStringSubmatch(sc.Text()); m != nil {
				base <- m[1]
			}
		}
		stopped <- run.Wait()
	}()
	var url string
	select {
	case url = <-base:
	case <-time.After(5 * time.Minute):
		t.Fatal("make run did not print the page's address within 5 minutes")
	}

	demo := exec.Command("make", "--no-print-directory", "demo")
	demo.Dir, demo.Env = root, env
	demoOut, err := demo.CombinedOutput()
	t.Logf("make demo:\n%s", demoOut)
	require.NoError(t, err)
	m := regexp.MustCompile(`loaded \d+ of (\d+) events`).FindAllSubmatch(demoOut, -1)
	require.NotEmpty(t, m)
	total := string(m[len(m)-1][1])
	require.Contains(t, string(demoOut), "teams: platform, payments and search")

	// The writer has written every event before the page is looked at.
	token := apiToken(t, url)
	require.Eventually(t, func() bool {
		var page struct{ Count int }
		return getAPI(url+"/events?limit=1", token, &page) == nil && fmt.Sprint(page.Count) == total
	}, 3*time.Minute, 200*time.Millisecond, "the writer never wrote the demo's %s events", total)

	b := startChromium(t)
	b.call(t, "Page.enable", nil)
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false})
	b.navigate(t, url+"/")
	require.Equal(t, "/login", b.eval(t, "location.pathname"), "without a session the page sends the browser to the login form")
	b.eval(t, `document.querySelector('#username').value = 'admin';
		document.querySelector('#password').value = 'admin';
		document.querySelector('form.login').submit(); true`)
	b.waitFor(t, `location.pathname === '/' && document.readyState === 'complete' && !!document.querySelector('section.row')`)

	var report struct {
		Errors, Sections, Organisation, Teams, Pipelines, Trends int
		Missing                                                  []string
		Radius                                                   string
		Text                                                     string
	}
	raw := b.eval(t, `JSON.stringify((() => {
		const sections = [...document.querySelectorAll('section.row')];
		const missing = [];
		for (const s of sections) {
			const name = s.dataset.kind + ' ' + s.dataset.name;
			const figures = s.querySelectorAll('data[data-figure]');
			if (figures.length !== 33) missing.push(name + ': ' + figures.length + ' figures, not 33');
			for (const d of figures) {
				const f = d.dataset.figure;
				// Every demo pipeline deploys, commits and fails now and then; not all have incidents.
				const optional = f.startsWith('failed_deployment_recovery_time') && s.dataset.kind !== 'organisation';
				if (!optional && d.value === '') missing.push(name + ': ' + f + ' is empty');
				if (/NaN|undefined|Inf/.test(d.value + d.textContent)) missing.push(name + ': ' + f + ' reads ' + d.textContent);
			}
			if (s.querySelectorAll('data[data-figure$=".deployments"]')[0].value === '') missing.push(name + ': no deployment count');
		}
		return {
			errors: document.querySelectorAll('.error').length,
			sections: sections.length,
			organisation: document.querySelectorAll('section[data-kind=organisation]').length,
			teams: document.querySelectorAll('section[data-kind=team]').length,
			pipelines: document.querySelectorAll('section[data-kind=pipeline]').length,
			trends: document.querySelectorAll('svg.trend polyline').length,
			missing: missing,
			radius: getComputedStyle(sections[0]).borderTopLeftRadius,
			text: document.body.innerText.slice(0, 400),
		};
	})())`)
	require.NoError(t, json.Unmarshal([]byte(raw.(string)), &report))
	t.Logf("page: %+v", report)
	require.Zero(t, report.Errors, "the page shows an error: %s", report.Text)
	require.Equal(t, 1, report.Organisation)
	require.Equal(t, 3, report.Teams, "make demo's teams")
	require.Equal(t, 8, report.Pipelines, "make demo's pipelines")
	require.Empty(t, report.Missing)
	require.Positive(t, report.Trends)
	require.Equal(t, "8px", report.Radius, "the stylesheet applies (its CSP hash matches)")
	b.screenshot(t, filepath.Join(root, ".data", "ui-check-desktop.png"), nil)
	// The top of it, as docs/first-page.png shows it.
	b.screenshot(t, filepath.Join(root, ".data", "ui-check-top.png"), map[string]any{"x": 0, "y": 0, "width": 1280, "height": 800, "scale": 1})

	// A phone: nothing wider than the screen.
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true})
	b.navigate(t, url+"/")
	b.waitFor(t, `document.readyState === 'complete' && !!document.querySelector('section.row')`)
	width := b.eval(t, `document.documentElement.scrollWidth + '/' + window.innerWidth`).(string)
	parts := strings.Split(width, "/")
	require.Equal(t, parts[1], parts[0], "the page is wider than a phone's screen (scroll width / screen width)")
	b.screenshot(t, filepath.Join(root, ".data", "ui-check-phone.png"), nil)
}

func withoutDatabaseURL(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "DEVOPSTIC_DATABASE_URL=") {
			out = append(out, e)
		}
	}
	return out
}

func apiToken(t *testing.T, base string) string {
	resp, err := http.Post(base+"/tokens", "application/json", strings.NewReader(`{"username":"admin","password":"admin"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok struct{ Token string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	require.NotEmpty(t, tok.Token)
	return tok.Token
}

func getAPI(url, token string, into any) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// browser is a headless Chromium driven over the DevTools protocol, one page.
type browser struct {
	ws *websocket.Conn
	id int
}

func startChromium(t *testing.T) *browser {
	bin, err := exec.LookPath("chromium")
	require.NoError(t, err, "make ui-check installs Debian's chromium package")
	// Its own profile directory, removed once every Chromium process is gone (t.TempDir's
	// removal would race with the helper processes still writing to it).
	profile, err := os.MkdirTemp("", "devopstic-ui-check-")
	require.NoError(t, err)
	args := []string{"--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1",
		"--user-data-dir=" + profile, "about:blank"}
	if os.Geteuid() == 0 {
		args = append([]string{"--no-sandbox"}, args...) // Chromium refuses to sandbox as root
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers in its group, stopped with it
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		for range 50 { // the group's last processes exit just after the main one
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove Chromium's profile %s", profile)
	})

	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				endpoint <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var browserWS string
	select {
	case browserWS = <-endpoint:
	case <-time.After(60 * time.Second):
		t.Fatal("Chromium did not open its DevTools port within 60s")
	}
	// The page target's own endpoint, from the browser's HTTP listing.
	host := strings.SplitN(strings.TrimPrefix(browserWS, "ws://"), "/", 2)[0]
	var targets []struct{ Type, WebSocketDebuggerURL string }
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + host + "/json/list")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		targets = nil
		return json.NewDecoder(resp.Body).Decode(&targets) == nil && len(targets) > 0
	}, 30*time.Second, 100*time.Millisecond)
	for _, tg := range targets {
		if tg.Type == "page" {
			ws, err := websocket.Dial(tg.WebSocketDebuggerURL, "", "http://127.0.0.1")
			require.NoError(t, err)
			t.Cleanup(func() { _ = ws.Close() })
			return &browser{ws: ws}
		}
	}
	t.Fatal("Chromium has no page")
	return nil
}

// call sends one DevTools command and returns its result, skipping the events in between.
func (b *browser) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	b.id++
	require.NoError(t, b.ws.SetDeadline(time.Now().Add(60*time.Second)))
	require.NoError(t, websocket.JSON.Send(b.ws, map[string]any{"id": b.id, "method": method, "params": params}))
	for {
		var msg struct {
			ID     int
			Result json.RawMessage
			Error  *struct{ Message string }
		}
		require.NoError(t, websocket.JSON.Receive(b.ws, &msg), method)
		if msg.ID != b.id {
			continue
		}
		require.Nil(t, msg.Error, "%s: %+v", method, msg.Error)
		return msg.Result
	}
}

// eval evaluates a JavaScript expression in the page (the harness's script, not the page's:
// the page has none) and returns its value.
func (b *browser) eval(t *testing.T, expr string) any {
	t.Helper()
	var r struct {
		Result           struct{ Value any }
		ExceptionDetails *struct{ Text string }
	}
	require.NoError(t, json.Unmarshal(b.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}), &r))
	require.Nil(t, r.ExceptionDetails, "%s: %+v", expr, r.ExceptionDetails)
	return r.Result.Value
}

func (b *browser) waitFor(t *testing.T, cond string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for b.eval(t, "!!("+cond+")") != true {
		require.True(t, time.Now().Before(deadline), "waited 60s for %s", cond)
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *browser) navigate(t *testing.T, url string) {
	t.Helper()
	b.call(t, "Page.navigate", map[string]any{"url": url})
	b.waitFor(t, `document.readyState === 'complete' && location.href !== 'about:blank'`)
}

// screenshot saves the whole page, or the clip of it when clip is not nil.
func (b *browser) screenshot(t *testing.T, path string, clip map[string]any) {
	t.Helper()
	var shot struct{ Data string }
	params := map[string]any{"format": "png", "captureBeyondViewport": true}
	if clip != nil {
		params["clip"] = clip
	}
	require.NoError(t, json.Unmarshal(b.call(t, "Page.captureScreenshot", params), &shot))
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
