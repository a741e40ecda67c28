package deployments_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/pgcluster"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The tests run in deployments/; the artifacts they check are named from the repository root.
const root = ".."

func repoPath(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

// ---- tools

// helmVersion is the helm the chart is checked with; `make tools` builds it from the Go module
// proxy into a cache outside the work tree and exports DEVOPSTIC_HELM.
const helmVersion = "v3.22.0"

func helmPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DEVOPSTIC_HELM"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		t.Fatalf("DEVOPSTIC_HELM=%s does not exist: run `make tools`, which builds helm %s", p, helmVersion)
	}
	out, err := exec.Command("go", "env", "GOCACHE").Output()
	require.NoError(t, err, "go env GOCACHE")
	p := filepath.Join(strings.TrimSpace(string(out)), "..", "devopstic-tools", "helm-"+helmVersion, "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("helm %s is not installed at %s: run `make tools` (it builds helm from the Go module proxy, once)", helmVersion, p)
	}
	return p
}

func composePath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose is not installed: run `make tools` (Debian: apt-get install docker-compose)")
	}
	return p
}

// run runs a command in the test's directory and returns its standard output; it fails the
// test, with the standard error, when the command fails.
func run(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	out, stderr, err := runErr(env, name, args...)
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), stderr)
	return out
}

func runErr(env []string, name string, args ...string) (stdout []byte, stderr string, err error) {
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = env
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.Bytes(), errb.String(), err
}

// ---- docker-compose.yml

type composeProject struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image         string                                `yaml:"image"`
	Build         *struct{ Target string }              `yaml:"build"`
	Entrypoint    []string                              `yaml:"entrypoint"`
	Command       []string                              `yaml:"command"`
	ContainerName string                                `yaml:"container_name"`
	Restart       string                                `yaml:"restart"`
	Ports         []any                                 `yaml:"ports"`
	Environment   map[string]*string                    `yaml:"environment"`
	Healthcheck   *struct{ Test []string }              `yaml:"healthcheck"`
	DependsOn     map[string]struct{ Condition string } `yaml:"depends_on"`
	Volumes       []any                                 `yaml:"volumes"`
	User          string                                `yaml:"user"`
	GroupAdd      []any                                 `yaml:"group_add"`
}

type mount struct{ source, target string }

// mounts reads volumes in either form: docker-compose 1.29's "source:target:mode" strings or
// Compose v2's long form.
func (s composeService) mounts(t *testing.T) []mount {
	t.Helper()
	var ms []mount
	for _, v := range s.Volumes {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			require.GreaterOrEqual(t, len(parts), 2, "volume %q", v)
			ms = append(ms, mount{parts[0], parts[1]})
		case map[string]any:
			ms = append(ms, mount{fmt.Sprint(v["source"]), fmt.Sprint(v["target"])})
		default:
			t.Fatalf("volume %#v", v)
		}
	}
	return ms
}

func (s composeService) mountAt(t *testing.T, target string) (mount, bool) {
	for _, m := range s.mounts(t) {
		if m.target == target {
			return m, true
		}
	}
	return mount{}, false
}

func (s composeService) env(name string) (string, bool) {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return "", ok
	}
	return *v, true
}

// composeConfig runs `config` (the whole model, interpolated and validated, as YAML) with the
// given tool: docker-compose 1.29 ("docker-compose") or Compose v2 ("docker", "compose").
func composeConfig(t *testing.T, tool []string, files ...string) composeProject {
	t.Helper()
	return composeConfigWith(t, tool, nil, files...)
}

// composeConfigWith is composeConfig with variables set in the environment, as a shell would
// (they win over .env).
func composeConfigWith(t *testing.T, tool, vars []string, files ...string) composeProject {
	t.Helper()
	var env []string
	if vars != nil {
		env = append(os.Environ(), vars...)
	}
	args := append([]string{}, tool[1:]...)
	args = append(args, "--env-file", repoPath(".env.example"))
	for _, f := range files {
		args = append(args, "-f", repoPath(f))
	}
	args = append(args, "config")
	out := run(t, env, tool[0], args...)
	var p composeProject
	require.NoError(t, yaml.Unmarshal(out, &p), "%s config output:\n%s", tool[0], out)
	return p
}

// composeTools are the compose implementations to check with: docker-compose 1.29 always (the
// test fails without it), Compose v2 where `docker compose` works.
func composeTools(t *testing.T) [][]string {
	tools := [][]string{{composePath(t)}}
	if _, _, err := runErr(nil, "docker", "compose", "version"); err == nil {
		tools = append(tools, []string{"docker", "compose"})
	}
	return tools
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(repoPath("docker-compose.yml"))
	require.NoError(t, err)
	var top map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &top))
	require.NotContains(t, top, "version", "no top-level version: the Compose Specification, read by 1.29 and v2 alike")

	for _, tool := range composeTools(t) {
		t.Run(filepath.Base(strings.Join(tool, " ")), func(t *testing.T) {
			checkCompose(t, composeConfig(t, tool, "docker-compose.yml"))
		})
	}
}

func checkCompose(t *testing.T, p composeProject) {
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	require.Equal(t, []string{"grafana", "ingest", "migrate", "nats", "postgres", "secrets", "writer"}, names)
	for _, v := range []string{"postgres", "nats", "grafana", "secrets"} {
		require.Contains(t, p.Volumes, v, "named volume %s", v)
	}

	dependsOn := func(svc string, want map[string]string) {
		t.Helper()
		got := map[string]string{}
		for dep, d := range p.Services[svc].DependsOn {
			got[dep] = d.Condition
		}
		require.Equal(t, want, got, "%s depends_on", svc)
	}
	healthcheck := func(svc, contains string) {
		t.Helper()
		hc := p.Services[svc].Healthcheck
		require.NotNil(t, hc, "%s has a healthcheck", svc)
		require.Contains(t, strings.Join(hc.Test, " "), contains, "%s healthcheck", svc)
	}

	pg := p.Services["postgres"]
	require.Regexp(t, `^postgres:15`, pg.Image)
	m, ok := pg.mountAt(t, "/var/lib/postgresql/data")
	require.True(t, ok, "postgres data on a volume")
	require.Equal(t, "postgres", m.source)
	healthcheck("postgres", "pg_isready")
	m, ok = pg.mountAt(t, "/docker-entrypoint-initdb.d/10-reader-role.sh")
	require.True(t, ok, "the reader role's init script is mounted")
	require.FileExists(t, m.source)
	for _, m := range pg.mounts(t) {
		if strings.HasPrefix(m.target, "/docker-entrypoint-initdb.d/") {
			require.NotEqual(t, ".sql", filepath.Ext(m.target), "an .sql in initdb.d would run without the password")
		}
	}
	dependsOn("postgres", map[string]string{"secrets": "service_completed_successfully"})

	ns := p.Services["nats"]
	require.Regexp(t, `^nats:2(\.[0-9.]+)?-alpine$`, ns.Image,
		"the alpine image: its wget runs the healthcheck, its /bin/sh the entry point (the scratch image has neither)")
	checkNATSServer(t, ns, "nats", "deployments/nats/nats.conf")
	m, ok = ns.mountAt(t, "/data")
	require.True(t, ok, "the JetStream store on a volume")
	require.Equal(t, "nats", m.source)
	healthcheck("nats", "8222/healthz")

	mig := p.Services["migrate"]
	require.Equal(t, []string{"migrate"}, mig.Command)
	require.Equal(t, "devopstic", mig.Build.Target)
	require.Contains(t, []string{"", "no"}, mig.Restart, "a one-shot service is not restarted")
	// migrate also creates the stream and the auth bucket, as the NATS admin: NATS must be up.
	dependsOn("migrate", map[string]string{"postgres": "service_healthy", "nats": "service_healthy"})

	for _, svc := range []string{"ingest", "writer", "migrate"} {
		s := p.Services[svc]
		url, _ := s.env("DEVOPSTIC_NATS_URL")
		require.Equal(t, "nats://nats:4222", url, svc)
		host, _ := s.env("DEVOPSTIC_DATABASE_HOST")
		require.Equal(t, "postgres", host, svc)
	}
	for _, svc := range []string{"ingest", "writer"} {
		s := p.Services[svc]
		require.Equal(t, svc, s.Build.Target)
		dependsOn(svc, map[string]string{"nats": "service_healthy", "migrate": "service_completed_successfully"})
		require.Equal(t, "unless-stopped", s.Restart)
	}
	ing := p.Services["ingest"]
	addr, _ := ing.env("DEVOPSTIC_HTTP_ADDR")
	require.Equal(t, "0.0.0.0:8080", addr)
	require.Len(t, ing.Ports, 1)
	require.Contains(t, fmt.Sprint(ing.Ports[0]), "8080")
	healthcheck("ingest", "/readyz")

	// --scale writer=3 needs no fixed name and no fixed host port; it has nothing to probe.
	w := p.Services["writer"]
	require.Empty(t, w.ContainerName)
	require.Empty(t, w.Ports)
	require.Nil(t, w.Healthcheck, "the writer has no HTTP endpoint to check")

	gf := p.Services["grafana"]
	dependsOn("grafana", map[string]string{"postgres": "service_healthy", "migrate": "service_completed_successfully"})
	healthcheck("grafana", "/api/health")
	m, ok = gf.mountAt(t, "/etc/grafana/provisioning")
	require.True(t, ok, "grafana/provisioning mounted")
	require.Equal(t, mustAbs(t, repoPath("grafana/provisioning")), m.source)
	// The whole directory, so its alerting/ (the alert rules) with it.
	for _, dir := range []string{"datasources", "dashboards", "alerting"} {
		entries, err := os.ReadDir(filepath.Join(m.source, dir))
		require.NoError(t, err, "grafana/provisioning/%s, mounted at /etc/grafana/provisioning/%s", dir, dir)
		require.NotEmpty(t, entries, dir)
	}
	m, ok = gf.mountAt(t, dashboardsPath(t))
	require.True(t, ok, "grafana/dashboards mounted where the provider looks: %s", dashboardsPath(t))
	require.Equal(t, mustAbs(t, repoPath("grafana/dashboards")), m.source)
	user, _ := gf.env("GF_DEVOPSTIC_DB_USER")
	require.Equal(t, "devopstic_reader", user, "Grafana reads as the read-only role")
	for _, v := range datasourceVariables(t) {
		_, plain := gf.env(v)
		_, file := gf.env(v + "__FILE")
		require.True(t, plain || file, "grafana sets %s, which the datasource reads", v)
	}

	// Every *_FILE points into a volume the service mounts.
	for name, s := range p.Services {
		for k := range s.Environment {
			if !strings.HasSuffix(k, "_FILE") {
				continue
			}
			file, _ := s.env(k)
			found := false
			for _, m := range s.mounts(t) {
				found = found || strings.HasPrefix(file, m.target+"/")
			}
			require.True(t, found, "%s: %s=%s is in no mounted volume", name, k, file)
		}
	}
}

func TestComposeClusterOverride(t *testing.T) {
	t.Parallel()
	for _, tool := range composeTools(t) {
		t.Run(filepath.Base(strings.Join(tool, " ")), func(t *testing.T) {
			p := composeConfig(t, tool, "docker-compose.yml", "deployments/nats/docker-compose.cluster.yml")
			for svc, conf := range clusterNATSServers {
				s := p.Services[svc]
				checkNATSServer(t, s, svc, conf)
				_, ok := s.mountAt(t, "/data")
				require.True(t, ok, "%s keeps its store on a volume", svc)
				require.NotNil(t, s.Healthcheck, svc)
			}
			// Every node runs as the nats user, on a store made its own by the secrets service.
			checkRunsAsUsers(t, readDockerfile(t), p, slices.Sorted(maps.Keys(clusterNATSServers))...)
			for _, svc := range []string{"ingest", "writer", "migrate"} {
				u, _ := p.Services[svc].env("DEVOPSTIC_NATS_URL")
				require.Equal(t, "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222", u)
				r, _ := p.Services[svc].env("DEVOPSTIC_STREAM_REPLICAS")
				require.Equal(t, "3", r)
			}
		})
	}
}

// The NATS servers of compose (service -> the configuration it runs), and of compose with the
// cluster override.
var (
	composeNATSServers = map[string]string{"nats": "deployments/nats/nats.conf"}
	clusterNATSServers = map[string]string{
		"nats":   "deployments/nats/nats-1.conf",
		"nats-2": "deployments/nats/nats-2.conf",
		"nats-3": "deployments/nats/nats-3.conf",
	}
)

// natsPasswordFile is the file, in a service's secrets volume, that holds role's NATS password.
func natsPasswordFile(r stream.Role) string { return "nats-" + string(r) + "-password" }

// checkNATSServer: a compose NATS server runs conf (a file of deployments/nats, mounted) and
// gets the three users' passwords as DEVOPSTIC_NATS_<ROLE>_PASSWORD_FILE, which
// deployments/docker/entrypoint.sh, run by the image's /bin/sh, turns into the
// DEVOPSTIC_NATS_<ROLE>_PASSWORD the configuration reads; no other DEVOPSTIC_ variable.
func checkNATSServer(t *testing.T, s composeService, name, conf string) {
	t.Helper()
	require.Equal(t, []string{"/bin/sh", "/devopstic/entrypoint.sh", "nats-server"}, s.Entrypoint, "%s: the entry point reads the *_FILE secrets", name)
	m, ok := s.mountAt(t, "/devopstic/entrypoint.sh")
	require.True(t, ok, "%s mounts the entry point", name)
	require.Equal(t, mustAbs(t, repoPath("deployments/docker/entrypoint.sh")), m.source, name)
	require.Equal(t, []string{"--config", "/etc/nats/devopstic/" + filepath.Base(conf)}, s.Command, name)
	m, ok = s.mountAt(t, "/etc/nats/devopstic")
	require.True(t, ok, "%s mounts deployments/nats", name)
	require.Equal(t, mustAbs(t, repoPath(filepath.Dir(conf))), m.source, "%s runs %s", name, conf)
	require.FileExists(t, filepath.Join(m.source, filepath.Base(conf)))
	want := map[string]string{}
	for _, r := range stream.Roles {
		want[r.PasswordVar()+"_FILE"] = composeSecretsPath + "/" + natsPasswordFile(r)
	}
	got := map[string]string{}
	for k := range s.Environment {
		if strings.HasPrefix(k, "DEVOPSTIC_") {
			got[k], _ = s.env(k)
		}
	}
	require.Equal(t, want, got, "%s: the three users' password files, nothing else", name)
}

// forEachCompose checks docker-compose.yml, as every compose implementation at hand reads it
// with .env.example.
func forEachCompose(t *testing.T, check func(t *testing.T, p composeProject)) {
	t.Helper()
	for _, tool := range composeTools(t) {
		t.Run(filepath.Base(strings.Join(tool, " ")), func(t *testing.T) {
			check(t, composeConfig(t, tool, "docker-compose.yml"))
		})
	}
}

// The path where every service finds its secrets (docs/deploying.md's `docker compose exec ingest cat ...`).
const composeSecretsPath = "/run/secrets/devopstic"

// The directory under which the "secrets" service writes one directory per service
// (compose-secrets.sh's DEVOPSTIC_SECRETS_DIR).
const composeSecretsRoot = "/secrets"

// Each service's secrets are in a volume of its own, which holds exactly the files that service
// reads (its *_FILE variables) and which no other service mounts. Grafana above all gets the
// read-only role's password and its own admin password: not the JWT key, not the database
// owner's password, not the API login's.
func TestComposeSecretsPerService(t *testing.T) {
	t.Parallel()
	forEachCompose(t, func(t *testing.T, p composeProject) {
		written := writeComposeSecrets(t, p)
		owner := map[string]string{} // secrets volume -> the one service that reads it
		for name, s := range p.Services {
			if name == "secrets" {
				continue
			}
			reads := map[string]bool{}
			for k := range s.Environment {
				if file, _ := s.env(k); strings.HasSuffix(k, "_FILE") {
					require.Equal(t, composeSecretsPath, filepath.Dir(file), "%s: %s", name, k)
					reads[filepath.Base(file)] = true
				}
			}
			for _, m := range s.mounts(t) {
				if _, ok := written[m.source]; !ok {
					continue
				}
				require.Empty(t, owner[m.source], "the volume %s is %s's, yet %s mounts it too", m.source, owner[m.source], name)
				owner[m.source] = name
				require.Equal(t, composeSecretsPath, m.target, "%s mounts its secrets at %s", name, composeSecretsPath)
				entries, err := os.ReadDir(written[m.source])
				require.NoError(t, err)
				holds := map[string]bool{}
				for _, e := range entries {
					holds[e.Name()] = true
				}
				require.Equal(t, reads, holds, "%s's volume %s holds the secrets %s reads, and nothing else", name, m.source, name)
				if name == "grafana" {
					require.Equal(t, map[string]bool{"reader-password": true, "grafana-admin-password": true}, holds,
						"Grafana gets the read-only role's password and its own, nothing else")
				}
			}
			if len(reads) > 0 {
				_, ok := s.mountAt(t, composeSecretsPath)
				require.True(t, ok, "%s reads secrets and mounts its volume", name)
			}
		}
		for vol := range written {
			require.NotEmpty(t, owner[vol], "the secrets service writes %s, which no service reads", vol)
		}
	})
}

// writeComposeSecrets runs the secrets service's script against directories laid out as its
// mounts are, and returns the directory each secrets volume was written as.
func writeComposeSecrets(t *testing.T, p composeProject) map[string]string {
	t.Helper()
	tmp := t.TempDir()
	written := map[string]string{} // volume -> the directory the script wrote it as
	for _, m := range p.Services["secrets"].mounts(t) {
		if rel, ok := strings.CutPrefix(m.target, composeSecretsRoot+"/"); ok {
			written[m.source] = filepath.Join(tmp, rel)
			require.NoError(t, os.Mkdir(written[m.source], 0o750))
		}
	}
	require.NotEmpty(t, written, "the secrets service writes volumes under %s", composeSecretsRoot)
	run(t, []string{"PATH=" + os.Getenv("PATH"), "DEVOPSTIC_SECRETS_DIR=" + tmp, "DEVOPSTIC_SECRETS_LEGACY_DIR=" + t.TempDir()},
		"sh", repoPath("deployments/docker/compose-secrets.sh"))
	return written
}

// secretPath is where, in written (writeComposeSecrets), the file is that a service's variable
// name (a *_FILE) names in its container.
func secretPath(t *testing.T, p composeProject, written map[string]string, service, name string) string {
	t.Helper()
	s := p.Services[service]
	file, ok := s.env(name)
	require.True(t, ok, "%s sets %s", service, name)
	for _, m := range s.mounts(t) {
		if dir, ok := written[m.source]; ok && filepath.Dir(file) == m.target {
			return filepath.Join(dir, filepath.Base(file))
		}
	}
	t.Fatalf("%s: %s=%s is in no secrets volume it mounts", service, name, file)
	return ""
}

// Compose's NATS servers have DevOpstic's three users, with the passwords the "secrets" service
// writes, and each service logs in as its own role's user with that user's password: the ingest
// as devopstic-ingest, the writer as devopstic-writer, migrate (and the operator commands run in
// it) as devopstic-admin. No other service has a NATS login. The same with the cluster override,
// whose three nodes read the same passwords. Not parallel: the NATS configuration reads the
// passwords from the environment.
func TestComposeNATSLogins(t *testing.T) {
	for _, tool := range composeTools(t) {
		t.Run(filepath.Base(strings.Join(tool, " ")), func(t *testing.T) {
			checkNATSLogins(t, composeConfig(t, tool, "docker-compose.yml"), composeNATSServers)
			checkNATSLogins(t, composeConfig(t, tool, "docker-compose.yml", "deployments/nats/docker-compose.cluster.yml"), clusterNATSServers)
		})
	}
}

func checkNATSLogins(t *testing.T, p composeProject, servers map[string]string) {
	t.Helper()
	written := writeComposeSecrets(t, p)
	var passwords stream.Passwords
	for name, conf := range servers {
		s := p.Services[name]
		checkNATSServer(t, s, name, conf)
		// As the container starts: the entry point reads the files into the environment, where
		// the configuration finds them.
		env := []string{"PATH=" + os.Getenv("PATH")}
		for _, r := range stream.Roles {
			env = append(env, r.PasswordVar()+"_FILE="+secretPath(t, p, written, name, r.PasswordVar()+"_FILE"))
		}
		entrypoint, _ := s.mountAt(t, "/devopstic/entrypoint.sh")
		out := run(t, env, "sh", entrypoint.source, "env")
		pw := stream.Passwords{}
		for _, line := range strings.Split(string(out), "\n") {
			for _, r := range stream.Roles {
				if v, ok := strings.CutPrefix(line, r.PasswordVar()+"="); ok {
					pw[r] = v
					t.Setenv(r.PasswordVar(), v)
				}
			}
		}
		require.Len(t, pw, len(stream.Roles), "%s: the entry point sets every password:\n%s", name, out)
		require.Len(t, slices.Compact(slices.Sorted(maps.Values(pw))), len(stream.Roles), "a password per user")
		if passwords == nil {
			passwords = pw
		}
		require.Equal(t, passwords, pw, "%s: the nodes share the passwords", name)

		o, err := server.ProcessConfigFile(repoPath(conf))
		require.NoError(t, err, conf)
		users, err := stream.ServerUsers(pw)
		require.NoError(t, err)
		require.Equal(t, usersOf(users), usersOf(o.Users), "%s: DevOpstic's users, with the passwords of the files", name)
		store, ok := s.mountAt(t, "/data")
		require.True(t, ok, name)
		require.True(t, o.StoreDir == store.target || strings.HasPrefix(o.StoreDir, store.target+"/"),
			"%s: %s keeps the store (%s) on the volume at %s", name, conf, o.StoreDir, store.target)
		require.Equal(t, 4222, o.Port, "%s: where DEVOPSTIC_NATS_URL points", name)
		require.Equal(t, 8222, o.HTTPPort, "%s: where the healthcheck looks", name)
	}

	roles := map[string]stream.Role{"ingest": stream.RoleIngest, "writer": stream.RoleWriter, "migrate": stream.RoleAdmin}
	for name, s := range p.Services {
		if _, ok := servers[name]; ok || name == "secrets" { // "secrets" writes them all
			continue
		}
		var login []string // the service's NATS credentials, by variable
		for k := range s.Environment {
			if strings.HasPrefix(k, "DEVOPSTIC_NATS_") && (strings.Contains(k, "_USER") || strings.Contains(k, "PASSWORD")) {
				login = append(login, k)
			}
		}
		sort.Strings(login)
		r, ok := roles[name]
		if !ok {
			require.Empty(t, login, "%s has no NATS login", name)
			continue
		}
		require.Equal(t, []string{"DEVOPSTIC_NATS_PASSWORD_FILE", "DEVOPSTIC_NATS_USER"}, login, "%s: a user and its password, from a file", name)
		user, _ := s.env("DEVOPSTIC_NATS_USER")
		require.Equal(t, r.User(), user, name)
		file, _ := s.env("DEVOPSTIC_NATS_PASSWORD_FILE")
		require.Equal(t, composeSecretsPath+"/"+natsPasswordFile(r), file, name)
		got, err := os.ReadFile(secretPath(t, p, written, name, "DEVOPSTIC_NATS_PASSWORD_FILE"))
		require.NoError(t, err)
		require.Equal(t, passwords[r], string(got), "%s logs in with the password NATS has for %s", name, r.User())
	}
}

// imageUsers are what the images compose runs unmodified run as (uid:gid), where the file does
// not say: the postgres image starts as root, makes its data directory its user's and steps
// down to that user (su-exec postgres: 70:70 in the Alpine images) before it runs initdb's
// scripts and the server; Grafana's image runs as 472 in group 0.
var imageUsers = map[string]string{`^postgres:[0-9.]+-alpine`: "70:70", `^grafana/grafana:`: "472:0"}

// serviceGroups are the uid of a compose service's process and the groups it has.
func serviceGroups(t *testing.T, df dockerfile, name string, s composeService) (uid int, groups []int) {
	t.Helper()
	user := s.User
	if user == "" && s.Build != nil {
		user = df.user(s.Build.Target)
	}
	for pattern, u := range imageUsers {
		if user == "" && regexp.MustCompile(pattern).MatchString(s.Image) {
			user = u
		}
	}
	require.NotEmpty(t, user, "%s: whom does %s run as? Set user:, or add the image to imageUsers", name, s.Image)
	uid, gid := parseUser(t, user)
	groups = []int{gid}
	for _, g := range s.GroupAdd {
		var n int
		_, err := fmt.Sscanf(fmt.Sprint(g), "%d", &n)
		require.NoError(t, err, "%s: group_add %v: a numeric group", name, g)
		groups = append(groups, n)
	}
	return uid, groups
}

// No service of compose runs as root but postgres's entry point, which the image makes step
// down. "secrets" runs as a user of its own, which owns the secret files and shares each
// service's files with that service only, through a group: the volume it writes for a service
// is a directory its image creates (a new volume takes the owner and mode of the directory it is
// first mounted on), group-owned by a group the service has and closed to everyone else. NATS
// runs as a user too; its volume is made its own the same way, since the NATS image has no
// directory of its own to start from.
func TestComposeRunsAsUsers(t *testing.T) {
	t.Parallel()
	df := readDockerfile(t)
	forEachCompose(t, func(t *testing.T, p composeProject) {
		checkRunsAsUsers(t, df, p, slices.Sorted(maps.Keys(composeNATSServers))...)
	})
}

// checkRunsAsUsers checks TestComposeRunsAsUsers's rules on p, whose NATS servers are natsServers.
func checkRunsAsUsers(t *testing.T, df dockerfile, p composeProject, natsServers ...string) {
	t.Helper()
	for name, s := range p.Services {
		uid, _ := serviceGroups(t, df, name, s)
		if name != "postgres" {
			require.NotZero(t, uid, "%s runs as a user other than root", name)
		}
	}
	for _, name := range append([]string{"secrets"}, natsServers...) {
		require.NotEmpty(t, p.Services[name].User, "%s: user: says whom it runs as", name)
	}

	sec := p.Services["secrets"]
	require.NotNil(t, sec.Build, "the secrets service's image is built: its directories decide the volumes' owners")
	dirs := df.dirs(t, sec.Build.Target)
	secUID, secGroups := serviceGroups(t, df, "secrets", sec)
	require.Equal(t, df.user(sec.Build.Target), sec.User, "the image and compose agree on the secrets service's user")
	readers := map[string][]string{} // volume -> the other services that mount it
	for name, s := range p.Services {
		for _, m := range s.mounts(t) {
			if name != "secrets" {
				readers[m.source] = append(readers[m.source], name)
			}
		}
	}
	for _, m := range sec.mounts(t) {
		if !strings.HasPrefix(m.source, "/") && strings.HasPrefix(m.target, composeSecretsRoot+"/") {
			d, ok := dirs[m.target]
			require.True(t, ok, "the secrets service's image creates %s, owned by its user (a new volume would be root's)", m.target)
			require.Equal(t, secUID, d.uid, "%s: owned by the secrets service", m.target)
			require.Equal(t, os.FileMode(0o750), d.mode, "%s: the owner writes, the group reads, others nothing", m.target)
			require.Contains(t, secGroups, d.gid, "%s: the secrets service may give its files to group %d (group_add)", m.target, d.gid)
			require.NotEmpty(t, readers[m.source], m.source)
			for _, r := range readers[m.source] {
				_, groups := serviceGroups(t, df, r, p.Services[r])
				require.Contains(t, groups, d.gid, "%s reads %s through group %d", r, m.source, d.gid)
			}
		}
	}

	// NATS: its store's volume is made its user's by the secrets service's image, first.
	for _, name := range natsServers {
		ns := p.Services[name]
		natsUID, natsGroups := serviceGroups(t, df, name, ns)
		store, ok := ns.mountAt(t, "/data")
		require.True(t, ok, name)
		var prepared *mount
		for _, m := range sec.mounts(t) {
			if m.source == store.source {
				prepared = &m
			}
		}
		require.NotNil(t, prepared, "the secrets service mounts the volume %s, so that it is created with the owner %s needs", store.source, name)
		d, ok := dirs[prepared.target]
		require.True(t, ok, "the secrets service's image creates %s", prepared.target)
		require.Equal(t, natsUID, d.uid, "%s: the NATS store's volume is the nats user's", name)
		require.Equal(t, natsGroups[0], d.gid, name)
		require.Zero(t, d.mode&0o007, "%s: the NATS store is closed to others", name)
		require.Equal(t, "service_completed_successfully", ns.DependsOn["secrets"].Condition, "%s starts once its volume is made", name)
	}
}

// Grafana's anonymous access is off unless asked for, in compose and in the chart: an anonymous
// Viewer can send any SQL to the datasource through Grafana's query API (POST /api/ds/query), not
// only the dashboards' queries.
func TestGrafanaAnonymousOff(t *testing.T) {
	t.Parallel()
	for _, tool := range composeTools(t) {
		t.Run(filepath.Base(strings.Join(tool, " ")), func(t *testing.T) {
			for vars, want := range map[string]string{"": "false", "GRAFANA_ANONYMOUS=true": "true"} {
				p := composeConfigWith(t, tool, strings.Fields(vars), "docker-compose.yml")
				got, _ := p.Services["grafana"].env("GF_AUTH_ANONYMOUS_ENABLED")
				require.Equal(t, want, got, "GF_AUTH_ANONYMOUS_ENABLED with %q", vars)
				role, _ := p.Services["grafana"].env("GF_AUTH_ANONYMOUS_ORG_ROLE")
				require.Equal(t, "Viewer", role, "when on, anonymous users only view")
			}
		})
	}
	t.Run("helm", func(t *testing.T) {
		helm, chart := helmPath(t), chartCopy(t)
		for set, want := range map[string]string{"": "false", "grafana.anonymous=true": "true"} {
			args := append([]string{"--set", "nats.enabled=false"}, requiredValues...)
			if set != "" {
				args = append(args, "--set", set)
			}
			gf := podContainer(t, helmTemplate(t, helm, chart, args...), "Deployment/dora-devopstic-grafana", "grafana")
			require.Equal(t, want, envEntry(gf, "GF_AUTH_ANONYMOUS_ENABLED")["value"], "with %q", set)
			require.Equal(t, "Viewer", envEntry(gf, "GF_AUTH_ANONYMOUS_ORG_ROLE")["value"])
		}
	})
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}

// dashboardsPath is where grafana/provisioning/dashboards/devopstic.yaml looks for dashboards.
func dashboardsPath(t *testing.T) string {
	t.Helper()
	var f struct {
		Providers []struct{ Options struct{ Path string } }
	}
	raw, err := os.ReadFile(repoPath("grafana/provisioning/dashboards/devopstic.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &f))
	require.Len(t, f.Providers, 1)
	require.NotEmpty(t, f.Providers[0].Options.Path)
	return f.Providers[0].Options.Path
}

// datasourceVariables are the environment variables the datasource's provisioning file reads.
func datasourceVariables(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(repoPath("grafana/provisioning/datasources/devopstic.yaml"))
	require.NoError(t, err)
	var vars []string
	for _, m := range regexp.MustCompile(`\$\{?(GF_[A-Z0-9_]+)`).FindAllSubmatch(stripComments(raw), -1) {
		if !slices.Contains(vars, string(m[1])) {
			vars = append(vars, string(m[1]))
		}
	}
	require.NotEmpty(t, vars)
	return vars
}

func stripComments(raw []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// ---- .env.example

func TestEnvExampleListsEveryVariable(t *testing.T) {
	t.Parallel()
	f, err := os.Open(repoPath(".env.example"))
	require.NoError(t, err)
	defer f.Close()
	listed := map[string]bool{}
	line := regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=(.*)$`)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		m := line.FindStringSubmatch(text)
		require.NotNil(t, m, ".env.example:%d: %q is neither a comment nor VAR=value", n, text)
		// docker-compose 1.29 reads "VAR=x # note" as the value "x # note".
		require.NotContains(t, m[2], "#", ".env.example:%d: keep comments on their own lines", n)
		listed[m[1]] = true
	}
	require.NoError(t, sc.Err())

	for _, v := range configVariables() {
		require.True(t, listed[v], ".env.example does not list %s, a variable of pkg/config: add it there (and pass it in docker-compose.yml and the Helm chart when a service needs it)", v)
	}
	for _, file := range []string{"docker-compose.yml", "deployments/nats/docker-compose.cluster.yml"} {
		raw, err := os.ReadFile(repoPath(file))
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)`).FindAllSubmatch(raw, -1) {
			require.True(t, listed[string(m[1])], ".env.example does not list %s, which %s reads", m[1], file)
		}
	}
}

// configVariables are the env tags of every service's configuration.
func configVariables() []string {
	seen := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
				walk(f.Type)
				continue
			}
			if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
				seen[name] = true
			}
		}
	}
	for _, c := range []any{config.AllInOne{}, config.Ingest{}, config.Writer{}} {
		walk(reflect.TypeOf(c))
	}
	vars := make([]string, 0, len(seen))
	for v := range seen {
		vars = append(vars, v)
	}
	sort.Strings(vars)
	return vars
}

// ---- deployments/docker

// compose-secrets.sh writes one directory per service (TestComposeSecretsPerService checks which
// files each gets): files 0440 in the directory's group, the same value wherever a secret goes,
// kept from one start to the next, .env's value when it gives one, and an earlier version's
// single volume read on the way.
func TestComposeSecretsScript(t *testing.T) {
	t.Parallel()
	script := repoPath("deployments/docker/compose-secrets.sh")
	services := []string{"grafana", "ingest", "migrate", "nats", "postgres", "writer"}
	layout := func() (root string, env []string) {
		root = t.TempDir()
		for i, s := range services {
			require.NoError(t, os.Mkdir(filepath.Join(root, s), 0o750))
			if os.Getuid() == 0 { // as the image makes them: a group per service
				require.NoError(t, os.Chown(filepath.Join(root, s), -1, 4200+i))
			}
		}
		return root, []string{"PATH=" + os.Getenv("PATH"), "DEVOPSTIC_SECRETS_DIR=" + root, "DEVOPSTIC_SECRETS_LEGACY_DIR=" + filepath.Join(root, "no-earlier-version")}
	}
	// read returns "service/file" -> content.
	read := func(root string) map[string]string {
		got := map[string]string{}
		for _, s := range services {
			dir, err := os.Stat(filepath.Join(root, s))
			require.NoError(t, err)
			entries, err := os.ReadDir(filepath.Join(root, s))
			require.NoError(t, err)
			for _, e := range entries {
				p := filepath.Join(root, s, e.Name())
				st, err := os.Stat(p)
				require.NoError(t, err)
				require.Equal(t, os.FileMode(0o440), st.Mode().Perm(), "%s/%s: its owner and its group read it, no one else", s, e.Name())
				require.Equal(t, dir.Sys().(*syscall.Stat_t).Gid, st.Sys().(*syscall.Stat_t).Gid, "%s/%s: in its directory's group", s, e.Name())
				b, err := os.ReadFile(p)
				require.NoError(t, err)
				got[s+"/"+e.Name()] = string(b)
			}
		}
		return got
	}
	sameEverywhere := func(got map[string]string) map[string]string {
		byName := map[string]string{}
		for k, v := range got {
			name := filepath.Base(k)
			if prev, ok := byName[name]; ok {
				require.Equal(t, prev, v, "%s: one value wherever it goes", name)
			}
			byName[name] = v
		}
		return byName
	}

	root, env := layout()
	run(t, env, "sh", script)
	first := read(root)
	byName := sameEverywhere(first)
	for _, f := range []string{"jwt-secret", "api-password", "db-password", "reader-password", "grafana-admin-password",
		"nats-ingest-password", "nats-writer-password", "nats-admin-password"} {
		require.Regexp(t, `^[A-Za-z0-9]{40,}$`, byName[f], "%s: at least 40 URL-safe characters (the JWT key needs 32 bytes)", f)
	}
	require.NotEqual(t, byName["jwt-secret"], byName["api-password"])
	require.Len(t, slices.Compact(slices.Sorted(maps.Values(map[string]string{
		"i": byName["nats-ingest-password"], "w": byName["nats-writer-password"], "a": byName["nats-admin-password"]}))), 3,
		"a password per NATS user")

	run(t, env, "sh", script)
	require.Equal(t, first, read(root), "a second start keeps the generated secrets")

	run(t, append(env, "DEVOPSTIC_DATABASE_PASSWORD=given-in-dot-env"), "sh", script)
	third := sameEverywhere(read(root))
	require.Equal(t, "given-in-dot-env", third["db-password"], "a value from .env wins, in every service that reads it")
	require.Equal(t, byName["jwt-secret"], third["jwt-secret"])

	// An upgrade from the single volume "secrets" (earlier versions, files 0444): its secrets
	// are kept, Postgres having been initialised with its passwords.
	root, env = layout()
	legacy := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(legacy, "db-password"), []byte("the-password-postgres-was-made-with"), 0o444))
	env = append(env, "DEVOPSTIC_SECRETS_LEGACY_DIR="+legacy) // the later one wins
	run(t, env, "sh", script)
	upgraded := sameEverywhere(read(root))
	require.Equal(t, "the-password-postgres-was-made-with", upgraded["db-password"])
	require.Regexp(t, `^[A-Za-z0-9]{40,}$`, upgraded["jwt-secret"], "what the earlier volume lacks is generated")

	// A NATS password from .env that NATS's configuration parser would read as something other
	// than that string (a size, a negative number, a boolean), or too short: refused, before
	// anything is written, rather than a server that refuses every login or does not start.
	for _, bad := range []string{"4k", "-x", "true", "short0123456789", "has space 0123456789abcdef0123456789", "quote\"0123456789abcdef0123456789"} {
		root, env = layout()
		_, stderr, err := runErr(append(env, "DEVOPSTIC_NATS_WRITER_PASSWORD="+bad), "sh", script)
		require.Error(t, err, "%q", bad)
		require.Contains(t, stderr, "DEVOPSTIC_NATS_WRITER_PASSWORD", "%q: the error names the variable", bad)
		require.NotContains(t, stderr, bad, "the error does not print the value")
		entries, err := os.ReadDir(filepath.Join(root, "nats"))
		require.NoError(t, err)
		require.Empty(t, entries, "%q: nothing written", bad)
	}
	var stderr string
	var err error
	root, env = layout()
	run(t, append(env, "DEVOPSTIC_NATS_WRITER_PASSWORD=0123456789abcdef0123456789abcdef"), "sh", script)
	require.Equal(t, "0123456789abcdef0123456789abcdef", sameEverywhere(read(root))["nats-writer-password"], "openssl rand -hex 16 and longer pass")

	// A service's directory missing (its volume not mounted): an error, not a file in the wrong place.
	root, env = layout()
	require.NoError(t, os.Remove(filepath.Join(root, "grafana")))
	_, stderr, err = runErr(env, "sh", script)
	require.Error(t, err)
	require.Contains(t, stderr, filepath.Join(root, "grafana"))
}

func TestImageEntrypointReadsFileSecrets(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "jwt")
	require.NoError(t, os.WriteFile(secret, []byte("s3cret value\n"), 0o600))
	entrypoint := repoPath("deployments/docker/entrypoint.sh")
	show := `printf '%s|%s|%s' "$DEVOPSTIC_JWT_SECRET" "${DEVOPSTIC_JWT_SECRET_FILE-unset}" "$DEVOPSTIC_USERNAME"`

	out := run(t, []string{"PATH=" + os.Getenv("PATH"), "DEVOPSTIC_JWT_SECRET_FILE=" + secret, "DEVOPSTIC_USERNAME=ci"},
		"sh", entrypoint, "sh", "-c", show)
	require.Equal(t, "s3cret value|unset|ci", string(out))

	_, stderr, err := runErr([]string{"PATH=" + os.Getenv("PATH"), "DEVOPSTIC_JWT_SECRET_FILE=/nonexistent/jwt"},
		"sh", entrypoint, "true")
	require.Error(t, err)
	require.Contains(t, stderr, "DEVOPSTIC_JWT_SECRET_FILE")
}

// dockerfile is deployments/docker/Dockerfile read by stage.
type dockerfile struct {
	stages  map[string][]string // stage name -> its lines
	parents map[string]string   // stage name -> what it is FROM
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(repoPath("deployments/docker/Dockerfile"))
	require.NoError(t, err)
	d := dockerfile{stages: map[string][]string{}, parents: map[string]string{}}
	var current string
	from := regexp.MustCompile(`(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?`)
	for _, line := range strings.Split(string(raw), "\n") {
		if m := from.FindStringSubmatch(line); m != nil {
			current = m[2]
			d.parents[current] = m[1]
		}
		if current != "" {
			d.stages[current] = append(d.stages[current], line)
		}
	}
	return d
}

// lines are a final image's lines, following its FROM chain within the file.
func (d dockerfile) lines(stage string) []string {
	var chain [][]string
	for s := stage; d.stages[s] != nil; s = d.parents[s] {
		chain = append([][]string{d.stages[s]}, chain...)
	}
	return slices.Concat(chain...)
}

// user is what an image runs as: its last USER.
func (d dockerfile) user(stage string) string {
	user := ""
	for _, l := range d.lines(stage) {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "USER" {
			user = f[1]
		}
	}
	return user
}

// dir is a directory an image creates with `install -d -o UID -g GID -m MODE`.
type dir struct {
	uid, gid int
	mode     os.FileMode
}

// dirs are the directories a stage creates with install -d, by path.
func (d dockerfile) dirs(t *testing.T, stage string) map[string]dir {
	t.Helper()
	text := strings.ReplaceAll(strings.Join(d.lines(stage), "\n"), "\\\n", " ")
	dirs := map[string]dir{}
	for _, m := range regexp.MustCompile(`install -d -o ([0-9]+) -g ([0-9]+) -m ([0-7]+)((?:[ \t]+/[^ \t\n&;]+)+)`).FindAllStringSubmatch(text, -1) {
		var e dir
		var mode uint32
		_, err := fmt.Sscanf(m[1]+" "+m[2]+" "+m[3], "%d %d %o", &e.uid, &e.gid, &mode)
		require.NoError(t, err, m[0])
		e.mode = os.FileMode(mode)
		for _, p := range strings.Fields(m[4]) {
			dirs[p] = e
		}
	}
	return dirs
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	d := readDockerfile(t)
	require.Contains(t, strings.Join(d.stages["build"], "\n"), "CGO_ENABLED=0")
	for _, target := range []string{"ingest", "writer", "devopstic", "compose-secrets"} {
		require.Contains(t, d.stages, target, "a target per image")
		user := d.user(target)
		require.NotEmpty(t, user, "%s sets USER", target)
		uid, _ := parseUser(t, user)
		require.NotZero(t, uid, "%s runs as a user other than root", target)
		health := strings.Contains(strings.Join(d.stages[target], "\n"), "HEALTHCHECK")
		require.Equal(t, target == "ingest", health, "%s: a HEALTHCHECK only where there is an HTTP endpoint to check", target)
	}
}

// parseUser reads a numeric "uid:gid" (USER, compose's user:).
func parseUser(t *testing.T, user string) (uid, gid int) {
	t.Helper()
	_, err := fmt.Sscanf(strings.Replace(user, ":", " ", 1), "%d %d", &uid, &gid)
	require.NoError(t, err, "user %q: numeric uid:gid, so that file modes can be reasoned about", user)
	return uid, gid
}

// ---- deployments/postgres

func TestReaderRole(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	dbName := strings.TrimPrefix(u.Path, "/")
	binDir, err := pgcluster.FindBinDir(os.Getenv("DEVOPSTIC_PG_BINDIR"))
	require.NoError(t, err)
	psqlEnv := []string{
		"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"PGHOST=" + u.Hostname(), "PGPORT=" + u.Port(),
	}
	if pw, ok := u.User.Password(); ok {
		psqlEnv = append(psqlEnv, "PGPASSWORD="+pw)
	}
	sqlFile := mustAbs(t, repoPath("deployments/postgres/reader-role.sql"))
	script := repoPath("deployments/postgres/10-reader-role.sh")
	password := filepath.Join(t.TempDir(), "reader-password")
	require.NoError(t, os.WriteFile(password, []byte("reader-Pa55word\n"), 0o600))
	// As the postgres image runs it: its variables, the password from a file.
	imageEnv := append(slices.Clone(psqlEnv),
		"POSTGRES_USER="+u.User.Username(), "POSTGRES_DB="+dbName,
		"DEVOPSTIC_READER_PASSWORD_FILE="+password, "DEVOPSTIC_READER_SQL="+sqlFile)

	// Without a password, both refuse.
	_, stderr, err := runErr(append(slices.Clone(psqlEnv), "POSTGRES_USER="+u.User.Username(), "POSTGRES_DB="+dbName, "DEVOPSTIC_READER_SQL="+sqlFile), "sh", script)
	require.Error(t, err)
	require.Contains(t, stderr, "DEVOPSTIC_READER_PASSWORD")
	_, stderr, err = runErr(append(slices.Clone(psqlEnv), "PGUSER="+u.User.Username(), "PGDATABASE="+dbName),
		"psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", sqlFile)
	require.Error(t, err)
	require.Contains(t, stderr, "reader_password")

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer admin.Close(ctx)
	// PostgreSQL 14 and older let every role create objects in schema public: make this database
	// so, whatever the version here. The role the migrations run as, when it is not the schema's
	// owner, creates its tables through that grant.
	app := fmt.Sprintf("devopstic_app_%d", os.Getpid())
	_, err = admin.Exec(ctx, `GRANT CREATE ON SCHEMA public TO PUBLIC; CREATE ROLE `+app+` NOLOGIN`)
	require.NoError(t, err)
	t.Cleanup(func() { // before the database is dropped, which the role has privileges in
		ctx := context.Background()
		c, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, `DROP OWNED BY `+app+`; DROP ROLE `+app)
		require.NoError(t, err)
	})

	run(t, imageEnv, "sh", script)
	run(t, imageEnv, "sh", script) // idempotent: a second run changes nothing and does not fail
	run(t, append(slices.Clone(psqlEnv), "PGUSER="+u.User.Username(), "PGDATABASE="+dbName),
		"psql", "-X", "-v", "ON_ERROR_STOP=1", "-v", "reader_password=reader-Pa55word", "-v", "app_role="+app, "-f", sqlFile)
	ru := *u
	ru.User = url.UserPassword("devopstic_reader", "reader-Pa55word")
	reader, err := pgx.Connect(ctx, ru.String())
	require.NoError(t, err)
	defer reader.Close(ctx)

	var n int
	require.NoError(t, reader.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n), "the reader reads the tables")
	_, err = reader.Exec(ctx, `DELETE FROM events`)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "the reader cannot write: %v", err)
	require.Contains(t, []string{"42501", "25006"}, pgErr.Code, "permission denied or read-only transaction")

	// A table made by a later migration, by the role that runs the migrations, is readable too.
	_, err = admin.Exec(ctx, `CREATE TABLE later_migration (x int); INSERT INTO later_migration VALUES (1)`)
	require.NoError(t, err)
	require.NoError(t, reader.QueryRow(ctx, `SELECT x FROM later_migration`).Scan(&n))
	require.Equal(t, 1, n)

	// The role's settings are defaults, which any session lifts (a Grafana editor's query, or a
	// Viewer's through the query API, can): what holds is the grants. Lifted, the reader still
	// writes nothing, and creates nothing in schema public.
	_, err = reader.Exec(ctx, `SET default_transaction_read_only = off; SET statement_timeout = 0`)
	require.NoError(t, err, "a session may lift the role's defaults: docs/hardening.md says so")
	for _, sql := range []string{`DELETE FROM events`, `CREATE TABLE public.made_by_reader (x int)`, `CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS 'SELECT $1'`} {
		_, err = reader.Exec(ctx, sql)
		require.True(t, errors.As(err, &pgErr), "%s: %v", sql, err)
		require.Equal(t, "42501", pgErr.Code, "%s: permission denied, with read-only lifted", sql)
	}
	// The migrations' role still creates tables.
	_, err = admin.Exec(ctx, `SET ROLE `+app+`; CREATE TABLE public.made_by_app (x int); RESET ROLE`)
	require.NoError(t, err, "the application's role keeps CREATE on schema public")

	// A reader that could still create there (here through a role it was made a member of) is an
	// error that says what to do, not a warning lost in a log.
	_, err = admin.Exec(ctx, `GRANT `+app+` TO devopstic_reader`)
	require.NoError(t, err)
	_, stderr, err = runErr(imageEnv, "sh", script)
	_, _ = admin.Exec(ctx, `REVOKE `+app+` FROM devopstic_reader`)
	require.Error(t, err)
	require.Contains(t, stderr, "devopstic_reader can create objects in schema public")
}

// ---- deployments/nats

func TestNATSClusterConfiguration(t *testing.T) {
	passwords := setNATSPasswords(t) // not parallel: it sets the environment the files read
	var opts []*server.Options
	for i := 1; i <= 3; i++ {
		o, err := server.ProcessConfigFile(repoPath(fmt.Sprintf("deployments/nats/nats-%d.conf", i)))
		require.NoError(t, err, "nats-%d.conf", i)
		require.Equal(t, fmt.Sprintf("nats-%d", i), o.ServerName, "unique server names")
		require.True(t, o.JetStream)
		require.Equal(t, "/data/jetstream", o.StoreDir)
		require.Equal(t, "devopstic", o.Cluster.Name)
		require.Equal(t, 4222, o.Port)
		require.Equal(t, 6222, o.Cluster.Port)
		require.Equal(t, 8222, o.HTTPPort)
		var routes []string
		for _, r := range o.Routes {
			routes = append(routes, r.String())
		}
		require.Equal(t, []string{"nats://nats-1:6222", "nats://nats-2:6222", "nats://nats-3:6222"}, routes)
		require.Equal(t, 30*time.Second, o.LameDuckDuration)
		opts = append(opts, o)
	}

	// The same three, on loopback addresses instead of nats-1..3, form a cluster that holds a
	// stream with 3 replicas.
	clientPorts, routePorts, routeURLs := make([]int, 3), make([]int, 3), make([]string, 3)
	for i := range opts {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		routeURLs[i] = fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i])
	}
	var clientURLs []string
	for i, o := range opts {
		o.Host, o.Port, o.HTTPPort = "127.0.0.1", clientPorts[i], 0
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", routePorts[i]
		o.Routes = server.RoutesFromStr(strings.Join(routeURLs, ","))
		o.StoreDir = t.TempDir()
		o.JetStreamMaxStore, o.JetStreamMaxMemory = 1<<30, 64<<20
		o.NoSigs, o.NoLog = true, true
		srv, err := server.NewServer(o)
		require.NoError(t, err)
		go srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		require.True(t, srv.ReadyForConnections(10*time.Second), "nats-%d started", i+1)
		clientURLs = append(clientURLs, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	nc, err := nats.Connect(strings.Join(clientURLs, ","), append(passwords.As(stream.RoleAdmin).Options(), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))...)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s jetstream.Stream
	var errs []string
	for {
		// An attempt before the cluster has elected its meta leader may get no answer at all.
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		s, err = stream.EnsureStream(attempt, js, stream.Config{Replicas: 3, MaxAge: time.Hour, MaxBytes: -1, Duplicates: time.Minute})
		cancelAttempt()
		if err == nil || ctx.Err() != nil {
			break
		}
		if len(errs) == 0 || errs[len(errs)-1] != err.Error() {
			errs = append(errs, err.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err, "errors on the way: %s", strings.Join(errs, "; "))
	_, err = js.Publish(ctx, stream.Subject("native", "deploy"), []byte(`{}`))
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, info.Config.Replicas)
	require.NotNil(t, info.Cluster)
	require.Equal(t, "devopstic", info.Cluster.Name)
	require.Len(t, info.Cluster.Replicas, 2, "a leader and two replicas")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ---- deployments/kubernetes/devopstic

// chartCopy copies the chart into a temporary directory, resolving its links to the
// repository's grafana/ and reader-role.sql, and adds in charts/ a stand-in for the NATS chart,
// which `helm dependency update` fetches and these machines cannot: helm refuses to render a
// chart whose dependency is missing, even one its condition disables. The stand-in renders one
// ConfigMap, so that the test sees whether the condition switches it off, holding the values the
// NATS chart gets (natsChartValues).
func chartCopy(t *testing.T) string {
	t.Helper()
	src := repoPath("deployments/kubernetes/devopstic")
	dst := filepath.Join(t.TempDir(), "devopstic")
	require.NoError(t, copyTree(src, dst))
	stub := filepath.Join(dst, "charts", "nats")
	require.NoError(t, os.MkdirAll(filepath.Join(stub, "templates"), 0o755))
	var chart struct {
		Dependencies []struct{ Name, Version, Repository, Condition string }
	}
	raw, err := os.ReadFile(filepath.Join(src, "Chart.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &chart))
	require.Len(t, chart.Dependencies, 1)
	require.NoError(t, os.WriteFile(filepath.Join(stub, "Chart.yaml"),
		[]byte("apiVersion: v2\nname: nats\nversion: "+chart.Dependencies[0].Version+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(stub, "templates", "stub.yaml"),
		[]byte(natsStandIn), 0o644))
	return dst
}

// natsStandIn is the stand-in's template. Its ConfigMap holds the NATS chart's values with the
// templates in them evaluated in that chart's context, as the NATS chart's tplYaml does for the
// values under a $tplYaml key before it uses any.
const natsStandIn = `apiVersion: v1
kind: ConfigMap
metadata:
  name: stand-in-for-the-nats-chart
data:
  values.yaml: {{ tpl (toYaml .Values) . | quote }}
`

// natsChartValues are the values the NATS chart gets (rendered with nats.enabled), each
// {"$tplYaml": template} replaced by what the template gave, as that chart does.
func natsChartValues(t *testing.T, objs map[string]object) map[string]any {
	t.Helper()
	cm, ok := objs["ConfigMap/stand-in-for-the-nats-chart"]
	require.True(t, ok, "the NATS chart is rendered")
	var values map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(strMap(cm.raw["data"])["values.yaml"]), &values))
	var resolve func(v any) any
	resolve = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			if tpl, ok := v["$tplYaml"].(string); ok && len(v) == 1 {
				var out any
				require.NoError(t, yaml.Unmarshal([]byte(tpl), &out), "$tplYaml %q", tpl)
				return out
			}
			for k, e := range v {
				v[k] = resolve(e)
			}
		case []any:
			for i, e := range v {
				v[i] = resolve(e)
			}
		}
		return v
	}
	return resolve(values).(map[string]any)
}

// natsChartConfig is the configuration file the NATS chart writes from config.merge: JSON, in
// which a string "<< x >>" stands for x unquoted ($VARIABLE: from the environment).
func natsChartConfig(t *testing.T, values map[string]any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as the chart's toPrettyRawJson: "devopstic.events.>" as it is
	enc.SetIndent("", "  ")
	require.NoError(t, enc.Encode(at(values, "config", "merge")))
	conf := regexp.MustCompile(`"<<\s+(.*?)\s+>>"`).ReplaceAllString(b.String(), "$1")
	path := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	return path
}

func copyTree(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		st, err := os.Stat(from) // follows links
		if err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
		if st.IsDir() {
			if err := copyTree(from, to); err != nil {
				return err
			}
			continue
		}
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// requiredValues are the values the chart cannot default: where Postgres is and its password.
var requiredValues = []string{"--set", "database.host=postgres.db.svc", "--set", "secrets.databasePassword=app-password"}

// container is a container of a rendered Deployment or Job, with its pod template.
type container struct {
	name string
	obj  object
	spec map[string]any
	pod  map[string]any
}

type object struct {
	Kind     string
	Metadata struct {
		Name        string
		Labels      map[string]string
		Annotations map[string]string
	}
	raw map[string]any
}

func helmTemplate(t *testing.T, helm, chart string, args ...string) map[string]object {
	t.Helper()
	args = append([]string{"template", "dora", chart, "--namespace", "metrics"}, args...)
	out := run(t, nil, helm, args...)
	objects := map[string]object{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var raw map[string]any
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if raw == nil {
			continue
		}
		b, err := yaml.Marshal(raw)
		require.NoError(t, err)
		var o object
		require.NoError(t, yaml.Unmarshal(b, &o))
		o.raw = raw
		key := o.Kind + "/" + o.Metadata.Name
		require.NotContains(t, objects, key, "rendered twice")
		objects[key] = o
	}
	return objects
}

// at walks a decoded YAML value along a path of map keys and list indexes.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func strMap(v any) map[string]string {
	m := map[string]string{}
	for k, v := range asMap(v) {
		m[k] = fmt.Sprint(v)
	}
	return m
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// podContainer is the container named name of a rendered Deployment or Job (key Kind/name).
func podContainer(t *testing.T, objs map[string]object, key, name string) map[string]any {
	t.Helper()
	o, ok := objs[key]
	require.True(t, ok, "%s is rendered", key)
	for _, c := range list(at(o.raw, "spec", "template", "spec", "containers")) {
		if at(c, "name") == name {
			return asMap(c)
		}
	}
	t.Fatalf("%s has no container %s", key, name)
	return nil
}

// envEntry is a container's env entry of that name, nil if it has none; envEntries counts them.
func envEntry(c map[string]any, name string) map[string]any {
	for _, e := range list(c["env"]) {
		if at(e, "name") == name {
			return asMap(e)
		}
	}
	return nil
}

func envEntries(c map[string]any, name string) int {
	n := 0
	for _, e := range list(c["env"]) {
		if at(e, "name") == name {
			n++
		}
	}
	return n
}

// Behind the Ingress every request reaches the ingest from the ingress controller's address:
// unless the ingest takes the client's address from the header the controller sets, ten failed
// logins from anyone lock everyone out (the throttle counts per client address). With an
// Ingress, the chart sets DEVOPSTIC_PROXY_HEADER to X-Real-IP (which ingress-nginx sets to the
// address it saw, replacing whatever the client sent) and DEVOPSTIC_TRUSTED_PROXIES to where
// the controller may be; the ingest's own configuration must accept the pair.
func TestHelmIngressClientAddress(t *testing.T) {
	t.Parallel()
	helm, chart := helmPath(t), chartCopy(t)
	ingest := func(set ...string) map[string]any {
		args := append([]string{"--set", "nats.enabled=false"}, requiredValues...)
		for _, s := range set {
			args = append(args, "--set", s)
		}
		return podContainer(t, helmTemplate(t, helm, chart, args...), "Deployment/dora-devopstic-ingest", "ingest")
	}
	// config reads the container's environment as the ingest would, the Secret's keys standing
	// in for themselves.
	readConfig := func(c map[string]any) config.Ingest {
		environ := map[string]string{}
		for _, e := range list(c["env"]) {
			name := fmt.Sprint(at(e, "name"))
			if ref := asMap(at(e, "valueFrom", "secretKeyRef")); ref != nil {
				if ref["optional"] != true {
					environ[name] = "stand-in-for-the-secret-key-" + fmt.Sprint(ref["key"])
				}
				continue
			}
			environ[name] = fmt.Sprint(at(e, "value"))
		}
		var cfg config.Ingest
		require.NoError(t, config.Parse(&cfg, environ))
		require.NoError(t, cfg.Validate(), "the ingest accepts the chart's settings")
		return cfg
	}

	c := ingest()
	require.Nil(t, envEntry(c, "DEVOPSTIC_PROXY_HEADER"), "no Ingress, no proxy to believe")
	require.Nil(t, envEntry(c, "DEVOPSTIC_TRUSTED_PROXIES"))

	cfg := readConfig(ingest("ingest.ingress.enabled=true"))
	require.Equal(t, "X-Real-IP", cfg.HTTP.ProxyHeader)
	require.Equal(t, []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}, cfg.HTTP.TrustedProxies,
		"by default the private ranges, where a cluster's pods are")

	cfg = readConfig(ingest("ingest.ingress.enabled=true", "ingest.ingress.trustedProxies={10.42.0.0/16,10.43.0.0/16}"))
	require.Equal(t, []string{"10.42.0.0/16", "10.43.0.0/16"}, cfg.HTTP.TrustedProxies, "narrowed to the controller's pods")

	_, stderr, err := runErr(nil, helm, append(append([]string{"template", "dora", chart, "--set", "nats.enabled=false"}, requiredValues...),
		"--set", "ingest.ingress.enabled=true", "--set", "ingest.ingress.trustedProxies=null")...)
	require.Error(t, err, "a header believed from no one is a mistake")
	require.Contains(t, stderr, "ingest.ingress.trustedProxies is empty")

	c = ingest("ingest.ingress.enabled=true", "ingest.ingress.proxyHeader=")
	require.Nil(t, envEntry(c, "DEVOPSTIC_PROXY_HEADER"), "an empty proxyHeader turns it off")
	require.Nil(t, envEntry(c, "DEVOPSTIC_TRUSTED_PROXIES"))

	// Set by hand in ingest.env (another proxy in front): that wins, and is not set twice.
	c = ingest("ingest.ingress.enabled=true", "ingest.env.DEVOPSTIC_PROXY_HEADER=X-Client-IP", "ingest.env.DEVOPSTIC_TRUSTED_PROXIES=192.0.2.7")
	require.Equal(t, 1, envEntries(c, "DEVOPSTIC_PROXY_HEADER"))
	require.Equal(t, 1, envEntries(c, "DEVOPSTIC_TRUSTED_PROXIES"))
	cfg = readConfig(c)
	require.Equal(t, "X-Client-IP", cfg.HTTP.ProxyHeader)
	require.Equal(t, []string{"192.0.2.7"}, cfg.HTTP.TrustedProxies)
}

func TestHelmChart(t *testing.T) {
	t.Parallel()
	helm := helmPath(t)

	// The chart as it is in the repository (its links resolved by helm), then the copy.
	run(t, nil, helm, append([]string{"lint", repoPath("deployments/kubernetes/devopstic")}, requiredValues...)...)
	chart := chartCopy(t)
	run(t, nil, helm, append([]string{"lint", "--strict", chart, "--set", "nats.enabled=false"}, requiredValues...)...)

	// Its values: the NATS chart as a 3-node JetStream cluster on file storage.
	var chartYAML struct {
		Dependencies []struct{ Name, Version, Repository, Condition string }
	}
	raw, err := os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &chartYAML))
	dep := chartYAML.Dependencies[0]
	require.Equal(t, "nats", dep.Name)
	require.Equal(t, "https://nats-io.github.io/k8s/helm/charts/", dep.Repository)
	require.Equal(t, "nats.enabled", dep.Condition)
	var values map[string]any
	raw, err = os.ReadFile(filepath.Join(chart, "values.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &values))
	require.Equal(t, true, at(values, "nats", "enabled"))
	require.Equal(t, 3, at(values, "nats", "config", "cluster", "replicas"))
	require.Equal(t, true, at(values, "nats", "config", "jetstream", "enabled"))
	require.Equal(t, true, at(values, "nats", "config", "jetstream", "fileStore", "enabled"))
	require.Equal(t, 3, at(values, "stream", "replicas"))

	// The condition: the NATS chart renders only when nats.enabled.
	with := helmTemplate(t, helm, chart, requiredValues...)
	require.Contains(t, with, "ConfigMap/stand-in-for-the-nats-chart")
	objs := helmTemplate(t, helm, chart, append([]string{"--set", "nats.enabled=false"}, requiredValues...)...)
	require.NotContains(t, objs, "ConfigMap/stand-in-for-the-nats-chart")

	// A missing required value is an error that says what to set.
	_, stderr, err := runErr(nil, helm, "template", "dora", chart, "--set", "nats.enabled=false", "--set", "secrets.databasePassword=x")
	require.Error(t, err)
	require.Contains(t, stderr, "database.host is required")

	const fullname = "dora-devopstic"
	for _, key := range []string{
		"Deployment/" + fullname + "-ingest", "Service/" + fullname + "-ingest",
		"HorizontalPodAutoscaler/" + fullname + "-ingest", "PodDisruptionBudget/" + fullname + "-ingest",
		"Deployment/" + fullname + "-writer", "Job/" + fullname + "-migrate",
		"Deployment/" + fullname + "-grafana", "Service/" + fullname + "-grafana",
		"Secret/" + fullname,
		"ConfigMap/" + fullname + "-grafana-datasources", "ConfigMap/" + fullname + "-grafana-dashboard-providers",
		"ConfigMap/" + fullname + "-grafana-dashboards", "ConfigMap/" + fullname + "-grafana-alerting",
	} {
		require.Contains(t, objs, key)
	}
	secret := objs["Secret/"+fullname]

	var containers []container
	for _, o := range objs {
		if o.Kind != "Deployment" && o.Kind != "Job" {
			continue
		}
		pod := asMap(at(o.raw, "spec", "template"))
		for _, c := range list(at(pod, "spec", "containers")) {
			containers = append(containers, container{fmt.Sprint(at(c, "name")), o, asMap(c), pod})
		}
	}
	require.Len(t, containers, 4, "ingest, writer, migrate, grafana")
	env := func(c container, name string) map[string]any {
		for _, e := range list(c.spec["env"]) {
			if at(e, "name") == name {
				return asMap(e)
			}
		}
		return nil
	}

	for _, c := range containers {
		// Every secret comes from the Secret, by a key it has; no secret is a plain value.
		for _, e := range list(c.spec["env"]) {
			name := fmt.Sprint(at(e, "name"))
			if ref := asMap(at(e, "valueFrom", "secretKeyRef")); ref != nil {
				require.Equal(t, fullname, ref["name"], "%s %s", c.name, name)
				if ref["optional"] != true {
					require.Contains(t, asMap(secret.raw["data"]), ref["key"], "%s %s: key in the Secret", c.name, name)
				}
				continue
			}
			require.NotRegexp(t, `PASSWORD|SECRET|TOKEN`, name, "%s: %s must come from the Secret", c.name, name)
		}
		// Resources from the measured figures: requests and a memory limit everywhere.
		require.NotNil(t, at(c.spec, "resources", "requests", "cpu"), c.name)
		require.NotNil(t, at(c.spec, "resources", "requests", "memory"), c.name)
		require.NotNil(t, at(c.spec, "resources", "limits", "memory"), c.name)
		require.Equal(t, true, at(c.pod, "spec", "securityContext", "runAsNonRoot"), c.name)
		require.Equal(t, true, at(c.spec, "securityContext", "readOnlyRootFilesystem"), c.name)
		require.Equal(t, false, at(c.spec, "securityContext", "allowPrivilegeEscalation"), c.name)
	}
	byName := map[string]container{}
	for _, c := range containers {
		byName[c.name] = c
	}
	// Each container takes from the Secret the keys it reads, no other: Grafana above all.
	for name, want := range map[string][]string{
		"ingest":  {"database-password", "github-webhook-secret", "jwt-secret", "nats-ingest-password", "password", "username"},
		"writer":  {"database-password", "nats-writer-password"},
		"migrate": {"database-password", "nats-admin-password"},
		"grafana": {"grafana-admin-password", "reader-password"},
	} {
		var keys []string
		for _, e := range list(byName[name].spec["env"]) {
			if ref := asMap(at(e, "valueFrom", "secretKeyRef")); ref != nil {
				keys = append(keys, fmt.Sprint(ref["key"]))
			}
		}
		sort.Strings(keys)
		require.Equal(t, want, keys, "the Secret's keys %s reads", name)
	}

	ing := byName["ingest"]
	require.Equal(t, "/healthz", at(ing.spec, "livenessProbe", "httpGet", "path"))
	require.Equal(t, "/readyz", at(ing.spec, "readinessProbe", "httpGet", "path"))
	require.Equal(t, "http", at(ing.spec, "readinessProbe", "httpGet", "port"))
	require.Equal(t, 8080, at(ing.spec, "ports", 0, "containerPort"))
	require.Equal(t, "0.0.0.0:8080", env(ing, "DEVOPSTIC_HTTP_ADDR")["value"])
	for _, name := range []string{"DEVOPSTIC_JWT_SECRET", "DEVOPSTIC_USERNAME", "DEVOPSTIC_PASSWORD", "DEVOPSTIC_DATABASE_PASSWORD"} {
		require.NotNil(t, at(env(ing, name), "valueFrom", "secretKeyRef"), "ingest %s from the Secret", name)
	}
	for _, c := range []container{ing, byName["writer"], byName["migrate"]} {
		require.Equal(t, "nats://dora-nats:4222", env(c, "DEVOPSTIC_NATS_URL")["value"], "%s: the NATS chart's service <release>-nats", c.name)
		require.Equal(t, "3", env(c, "DEVOPSTIC_STREAM_REPLICAS")["value"], c.name)
		require.Equal(t, "postgres.db.svc", env(c, "DEVOPSTIC_DATABASE_HOST")["value"], c.name)
	}
	w := byName["writer"]
	for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
		require.Nil(t, w.spec[probe], "the writer has no HTTP endpoint to probe")
	}

	mig := byName["migrate"]
	require.Equal(t, []any{"migrate"}, mig.spec["args"])
	require.Regexp(t, `/devopstic:`, mig.spec["image"])
	require.Contains(t, mig.obj.Metadata.Annotations["helm.sh/hook"], "pre-upgrade", "migrations run before an upgrade rolls out")
	require.NotNil(t, at(env(mig, "DEVOPSTIC_DATABASE_PASSWORD"), "valueFrom", "secretKeyRef"))

	// The HPA scales the ingest; the PDB keeps one ingest.
	hpa := objs["HorizontalPodAutoscaler/"+fullname+"-ingest"]
	require.Equal(t, fullname+"-ingest", at(hpa.raw, "spec", "scaleTargetRef", "name"))
	require.Equal(t, "Deployment", at(hpa.raw, "spec", "scaleTargetRef", "kind"))
	pdb := objs["PodDisruptionBudget/"+fullname+"-ingest"]
	require.True(t, selects(strMap(at(pdb.raw, "spec", "selector", "matchLabels")), ing.pod), "the PDB selects the ingest's pods")

	// Grafana: the repository's provisioning and dashboards, as the read-only role.
	gf := byName["grafana"]
	require.Equal(t, "devopstic_reader", env(gf, "GF_DEVOPSTIC_DB_USER")["value"])
	require.Equal(t, "postgres.db.svc:5432", env(gf, "GF_DEVOPSTIC_DB_HOST")["value"])
	for _, v := range datasourceVariables(t) {
		require.NotNil(t, env(gf, v), "grafana sets %s, which the datasource reads", v)
	}
	require.Equal(t, "/api/health", at(gf.spec, "readinessProbe", "httpGet", "path"))
	mounts := map[string]string{} // mount path -> ConfigMap
	volumes := map[string]string{}
	for _, v := range list(at(gf.pod, "spec", "volumes")) {
		volumes[fmt.Sprint(at(v, "name"))] = fmt.Sprint(at(v, "configMap", "name"))
	}
	for _, m := range list(gf.spec["volumeMounts"]) {
		mounts[fmt.Sprint(at(m, "mountPath"))] = volumes[fmt.Sprint(at(m, "name"))]
	}
	for dir, files := range map[string]string{
		"/etc/grafana/provisioning/datasources": "grafana/provisioning/datasources/*.yaml",
		"/etc/grafana/provisioning/dashboards":  "grafana/provisioning/dashboards/*.yaml",
		"/etc/grafana/provisioning/alerting":    "grafana/provisioning/alerting/*.yaml",
		dashboardsPath(t):                       "grafana/dashboards/*.json",
	} {
		cm, ok := objs["ConfigMap/"+mounts[dir]]
		require.True(t, ok, "a ConfigMap is mounted at %s", dir)
		paths, err := filepath.Glob(repoPath(files))
		require.NoError(t, err)
		require.NotEmpty(t, paths, files)
		data := strMap(cm.raw["data"])
		require.Len(t, data, len(paths), "%s holds %s", cm.Metadata.Name, files)
		for _, p := range paths {
			want, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, strings.TrimRight(string(want), "\n"), strings.TrimRight(data[filepath.Base(p)], "\n"), "%s in %s", p, cm.Metadata.Name)
		}
	}

	// Every directory of grafana/provisioning is mounted where Grafana reads it.
	dirs, err := os.ReadDir(repoPath("grafana/provisioning"))
	require.NoError(t, err)
	for _, d := range dirs {
		require.Contains(t, mounts, "/etc/grafana/provisioning/"+d.Name(), "grafana/provisioning/%s is mounted", d.Name())
	}
	// Alert rules of one's own (other thresholds) replace the repository's.
	mine := filepath.Join(t.TempDir(), "my-dora.yaml")
	require.NoError(t, os.WriteFile(mine, []byte("apiVersion: 1\ngroups: []\n"), 0o600))
	withRules := helmTemplate(t, helm, chart, append([]string{"--set", "nats.enabled=false", "--set-file", "grafana.alerting.rules=" + mine}, requiredValues...)...)
	require.Equal(t, map[string]string{"dora.yaml": "apiVersion: 1\ngroups: []\n"}, strMap(withRules["ConfigMap/"+fullname+"-grafana-alerting"].raw["data"]))

	checkNetworkPolicies(t, objs, containers)

	// The optional Job that creates the read-only role runs reader-role.sql as it is.
	withRole := helmTemplate(t, helm, chart, append([]string{"--set", "nats.enabled=false", "--set", "readerRole.create=true"}, requiredValues...)...)
	require.Contains(t, withRole, "Job/"+fullname+"-reader-role")
	sql, err := os.ReadFile(repoPath("deployments/postgres/reader-role.sql"))
	require.NoError(t, err)
	require.Equal(t, strings.TrimRight(string(sql), "\n"), strMap(withRole["ConfigMap/"+fullname+"-reader-role"].raw["data"])["reader-role.sql"])
}

// The chart's NATS has DevOpstic's three users with exactly the allow-lists of pkg/stream's
// Role.Permissions (as deployments/nats/*.conf have them: TestNATSConfigurationUsers), and the
// password a server reads for each user is the one the container of that role logs in with: the
// ingest as devopstic-ingest, the writer as devopstic-writer, the migration Job as
// devopstic-admin; Grafana has no NATS login. The NATS servers take clients from those three
// only. Not parallel: the NATS configuration reads the passwords from the environment.
func TestHelmNATSUsers(t *testing.T) {
	helm, chart := helmPath(t), chartCopy(t)
	const fullname = "dora-devopstic"
	objs := helmTemplate(t, helm, chart, requiredValues...)
	secret := objs["Secret/"+fullname]
	secretValue := func(ref map[string]any) string {
		t.Helper()
		require.Equal(t, fullname, ref["name"], "the chart's Secret")
		v, ok := asMap(secret.raw["data"])[fmt.Sprint(ref["key"])]
		require.True(t, ok, "the Secret has the key %v", ref["key"])
		b, err := base64.StdEncoding.DecodeString(fmt.Sprint(v))
		require.NoError(t, err)
		return string(b)
	}

	// What each DevOpstic container logs in with.
	roles := map[string]stream.Role{"ingest": stream.RoleIngest, "writer": stream.RoleWriter, "migrate": stream.RoleAdmin}
	passwords := stream.Passwords{}
	var withNATS []container // the containers NATS must let in
	for key, name := range map[string]string{
		"Deployment/" + fullname + "-ingest": "ingest", "Deployment/" + fullname + "-writer": "writer",
		"Job/" + fullname + "-migrate": "migrate", "Deployment/" + fullname + "-grafana": "grafana",
	} {
		c := podContainer(t, objs, key, name)
		r, ok := roles[name]
		if !ok {
			for _, e := range list(c["env"]) {
				require.NotContains(t, at(e, "name"), "DEVOPSTIC_NATS", "%s has no NATS login", name)
			}
			continue
		}
		withNATS = append(withNATS, container{name: name, pod: asMap(at(objs[key].raw, "spec", "template"))})
		require.Equal(t, 1, envEntries(c, "DEVOPSTIC_NATS_USER"), name)
		require.Equal(t, r.User(), envEntry(c, "DEVOPSTIC_NATS_USER")["value"], "%s logs in as its role's user", name)
		require.Equal(t, 1, envEntries(c, "DEVOPSTIC_NATS_PASSWORD"), name)
		ref := asMap(at(envEntry(c, "DEVOPSTIC_NATS_PASSWORD"), "valueFrom", "secretKeyRef"))
		require.Equal(t, natsPasswordFile(r), ref["key"], "%s: its user's password", name)
		require.NotEqual(t, true, ref["optional"], name)
		passwords[r] = secretValue(ref)
		require.Regexp(t, `^[A-Za-z0-9]{32,}$`, passwords[r], "%s: generated, in a form NATS's configuration reads as it is", name)
		require.Equal(t, "nats://dora-nats:4222", envEntry(c, "DEVOPSTIC_NATS_URL")["value"], name)
	}
	require.Len(t, passwords, 3)
	require.Len(t, slices.Compact(slices.Sorted(maps.Values(passwords))), 3, "a password per user")

	// What the NATS servers get: their environment (container.env) and the users (config.merge).
	values := natsChartValues(t, objs)
	var fromSecret, want []string
	for name, e := range asMap(at(values, "container", "env")) {
		if ref := asMap(at(e, "valueFrom", "secretKeyRef")); ref != nil {
			fromSecret = append(fromSecret, name)
			t.Setenv(name, secretValue(ref))
		}
	}
	for _, r := range stream.Roles {
		want = append(want, r.PasswordVar())
	}
	sort.Strings(fromSecret)
	sort.Strings(want)
	require.Equal(t, want, fromSecret, "the NATS servers take the three passwords from the Secret, and no other key")
	o, err := server.ProcessConfigFile(natsChartConfig(t, values))
	require.NoError(t, err)
	users, err := stream.ServerUsers(passwords)
	require.NoError(t, err)
	require.Equal(t, usersOf(users), usersOf(o.Users),
		"the users and allow-lists of pkg/stream's Role.Permissions, with the password each role's container logs in with")
	require.Empty(t, o.NoAuthUser, "no user for clients without credentials")
	require.Empty(t, o.Username)
	require.Empty(t, o.Authorization)
	require.Empty(t, o.Accounts)

	// The servers take clients on 4222 from those three only (besides each other).
	np, ok := objs["NetworkPolicy/"+fullname+"-nats"]
	require.True(t, ok, "a NetworkPolicy for the NATS servers")
	var admitted []string
	grafana := container{name: "grafana", pod: asMap(at(objs["Deployment/"+fullname+"-grafana"].raw, "spec", "template"))}
	for _, c := range append(withNATS, grafana) {
		for _, rule := range list(at(np.raw, "spec", "ingress")) {
			for _, from := range list(at(rule, "from")) {
				if hasPort(rule, 4222) && selects(strMap(at(from, "podSelector", "matchLabels")), c.pod) {
					admitted = append(admitted, c.name)
				}
			}
		}
	}
	sort.Strings(admitted)
	require.Equal(t, []string{"ingest", "migrate", "writer"}, admitted, "who may connect to NATS")

	// Before an upgrade the Job logs in as on an install (helm template finds no live Secret;
	// only a live one without the NATS passwords, that of a version before them, changes that).
	upgrade := helmTemplate(t, helm, chart, append([]string{"--is-upgrade"}, requiredValues...)...)
	mig := podContainer(t, upgrade, "Job/"+fullname+"-migrate", "migrate")
	require.Equal(t, stream.RoleAdmin.User(), envEntry(mig, "DEVOPSTIC_NATS_USER")["value"])

	// Passwords given in the values: used, if NATS reads them as they are.
	given := "0123456789abcdef0123456789abcdef"
	objs = helmTemplate(t, helm, chart, append([]string{"--set", "secrets.natsWriterPassword=" + given}, requiredValues...)...)
	require.Equal(t, base64.StdEncoding.EncodeToString([]byte(given)), asMap(objs["Secret/"+fullname].raw["data"])["nats-writer-password"])
	for _, bad := range []string{"4k", "true", "short0123456789", "not-only-letters-and-digits-0123456789"} {
		_, stderr, err := runErr(nil, helm, append([]string{"template", "dora", chart, "--set", "secrets.natsWriterPassword=" + bad}, requiredValues...)...)
		require.Error(t, err, "%q", bad)
		require.Contains(t, stderr, "secrets.natsWriterPassword", "%q", bad)
	}

	// The NATS chart's values can name the Secret from the release alone. When the Secret has
	// another name (fullnameOverride, secrets.existingSecret), rendering fails until they name it.
	for _, set := range [][]string{{"fullnameOverride=metrics"}, {"secrets.existingSecret=byo"}} {
		_, stderr, err := runErr(nil, helm, append([]string{"template", "dora", chart, "--set", set[0]}, requiredValues...)...)
		require.Error(t, err, "%v", set)
		require.Contains(t, stderr, "nats.container.env.DEVOPSTIC_NATS_INGEST_PASSWORD.valueFrom.secretKeyRef.name", "%v: says what to set", set)
	}
	args := append([]string{"--set", "secrets.existingSecret=byo"}, requiredValues...)
	for _, r := range stream.Roles {
		args = append(args, "--set", "nats.container.env."+r.PasswordVar()+".valueFrom.secretKeyRef.name=byo")
	}
	objs = helmTemplate(t, helm, chart, args...)
	for name, e := range asMap(at(natsChartValues(t, objs), "container", "env")) {
		require.Equal(t, "byo", at(e, "valueFrom", "secretKeyRef", "name"), name)
	}
	ing := podContainer(t, objs, "Deployment/"+fullname+"-ingest", "ingest")
	require.Equal(t, "byo", at(envEntry(ing, "DEVOPSTIC_NATS_PASSWORD"), "valueFrom", "secretKeyRef", "name"))
	// With a NATS of the operator's (nats.enabled=false) the services log in the same way.
	objs = helmTemplate(t, helm, chart, append([]string{"--set", "nats.enabled=false", "--set", "fullnameOverride=metrics"}, requiredValues...)...)
	ing = podContainer(t, objs, "Deployment/metrics-ingest", "ingest")
	require.Equal(t, stream.RoleIngest.User(), envEntry(ing, "DEVOPSTIC_NATS_USER")["value"])
	require.Equal(t, "metrics", at(envEntry(ing, "DEVOPSTIC_NATS_PASSWORD"), "valueFrom", "secretKeyRef", "name"))
}

// selects says whether matchLabels select the pod template's labels.
func selects(matchLabels map[string]string, pod map[string]any) bool {
	labels := strMap(at(pod, "metadata", "labels"))
	for k, v := range matchLabels {
		if labels[k] != v {
			return false
		}
	}
	return len(matchLabels) > 0
}

// policySelects says whether a NetworkPolicy's podSelector (matchLabels, and matchExpressions
// with In) selects the pod template.
func policySelects(np object, pod map[string]any) bool {
	sel := at(np.raw, "spec", "podSelector")
	if !selects(strMap(at(sel, "matchLabels")), pod) {
		return false
	}
	labels := strMap(at(pod, "metadata", "labels"))
	for _, e := range list(at(sel, "matchExpressions")) {
		if at(e, "operator") != "In" || !slices.Contains(list(at(e, "values")), any(labels[fmt.Sprint(at(e, "key"))])) {
			return false
		}
	}
	return true
}

func hasPort(rule any, port int) bool {
	for _, p := range list(at(rule, "ports")) {
		if at(p, "port") == port {
			return true
		}
	}
	return false
}

// checkNetworkPolicies: each pod of the chart is selected by a policy for both directions (so
// everything else is denied); only the ingest takes traffic from anywhere; only the ingest, the
// writer, the migrations and Grafana may reach Postgres, and only the ingest, the writer and the
// migrations NATS.
func checkNetworkPolicies(t *testing.T, objs map[string]object, containers []container) {
	t.Helper()
	var policies []object
	for _, o := range objs {
		if o.Kind == "NetworkPolicy" {
			policies = append(policies, o)
		}
	}
	var open, toPostgres, toNATS []string
	for _, c := range containers {
		var ingress, egress []any
		both := false
		for _, np := range policies {
			if !policySelects(np, c.pod) {
				continue
			}
			types := list(at(np.raw, "spec", "policyTypes"))
			both = both || (slices.Contains(types, any("Ingress")) && slices.Contains(types, any("Egress")))
			ingress = append(ingress, list(at(np.raw, "spec", "ingress"))...)
			egress = append(egress, list(at(np.raw, "spec", "egress"))...)
		}
		require.True(t, both, "%s: a NetworkPolicy for both directions selects it", c.name)
		for _, r := range ingress {
			if len(list(at(r, "from"))) == 0 {
				open = append(open, c.name)
			}
		}
		for _, r := range egress {
			if hasPort(r, 5432) {
				toPostgres = append(toPostgres, c.name)
			}
			if hasPort(r, 4222) {
				toNATS = append(toNATS, c.name)
			}
		}
	}
	sort.Strings(open)
	sort.Strings(toPostgres)
	sort.Strings(toNATS)
	require.Equal(t, []string{"ingest"}, open, "only the ingest is reachable from outside")
	require.Equal(t, []string{"grafana", "ingest", "migrate", "writer"}, toPostgres, "who reaches Postgres")
	require.Equal(t, []string{"ingest", "migrate", "writer"}, toNATS, "who reaches NATS (migrate sets the stream up)")
}
