package config_test

import (
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/config"
)

const secret = "0123456789abcdef0123456789abcdef" // 32 bytes, the shortest accepted

// validEnv is the least an ingest needs; tests add or remove variables from a copy.
func validEnv() map[string]string {
	return map[string]string{
		"DEVOPSTIC_JWT_SECRET": secret,
		"DEVOPSTIC_USERNAME":   "admin",
		"DEVOPSTIC_PASSWORD":   "hunter2",
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	var c config.AllInOne
	require.NoError(t, config.Parse(&c, map[string]string{}))

	require.Equal(t, "127.0.0.1:8080", c.HTTP.Addr)
	require.Equal(t, 1000000, c.HTTP.BodyLimit)
	require.Equal(t, 1000, c.HTTP.MaxBatch)
	require.Equal(t, "devopstic", c.Database.Name)
	require.Equal(t, "localhost", c.Database.Host)
	require.Equal(t, 5432, c.Database.Port)
	require.Equal(t, "devopstic", c.Database.Username)
	require.Equal(t, "prefer", c.Database.SSLMode)
	require.Empty(t, c.Database.URL)
	require.Equal(t, 24*time.Hour, c.Auth.TokenTTL)
	require.Empty(t, c.Auth.JWTSecret)
	require.Equal(t, 7*24*time.Hour, c.Auth.RefreshWindow)
	require.Equal(t, 10, c.Auth.LoginAttempts)
	require.Equal(t, 50, c.Auth.LoginUserAttempts)
	require.Equal(t, 15*time.Minute, c.Auth.LoginWindow)
	require.Empty(t, c.HTTP.AdminAddr)
	require.Equal(t, 1000, c.Writer.BatchSize)
	require.Equal(t, 8760*time.Hour, c.NATS.StreamMaxAge)
	require.Equal(t, 24*time.Hour, c.NATS.DuplicateWindow)
	require.Empty(t, c.NATS.URL)
	require.Equal(t, "2m", c.Embedded.SyncInterval)
	require.Equal(t, "info", c.Log.Level)
	require.Equal(t, "text", c.Log.Format)
	require.Equal(t, "postgres://devopstic@localhost:5432/devopstic?sslmode=prefer", c.Database.ConnString())
}

func TestParseOverrides(t *testing.T) {
	t.Parallel()
	var c config.Ingest
	require.NoError(t, config.Parse(&c, map[string]string{
		"DEVOPSTIC_HTTP_ADDR":        ":9000",
		"DEVOPSTIC_MAX_BATCH":        "50",
		"DEVOPSTIC_TOKEN_TTL":        "90m",
		"DEVOPSTIC_DATABASE_PORT":    "6543",
		"DEVOPSTIC_NATS_URL":         "nats://nats:4222",
		"DEVOPSTIC_STREAM_MAX_AGE":   "720h",
		"DEVOPSTIC_STREAM_REPLICAS":  "3",
		"DEVOPSTIC_DATABASE_SSLMODE": "require",
	}))
	require.Equal(t, ":9000", c.HTTP.Addr)
	require.Equal(t, 50, c.HTTP.MaxBatch)
	require.Equal(t, 90*time.Minute, c.Auth.TokenTTL)
	require.Equal(t, 6543, c.Database.Port)
	require.Equal(t, "nats://nats:4222", c.NATS.URL)
	require.Equal(t, 720*time.Hour, c.NATS.StreamMaxAge)
	require.Equal(t, 3, c.NATS.StreamReplicas)
	require.Equal(t, "require", c.Database.SSLMode)
}

// Every error names the variable (not the Go field: HTTP.MaxBatch is DEVOPSTIC_MAX_BATCH to
// the user) and the value it was given, and says what was wanted.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		variable string
		value    string
		want     string
	}{
		{"not a whole number", "DEVOPSTIC_MAX_BATCH", "lots", `DEVOPSTIC_MAX_BATCH: "lots" is not a whole number`},
		{"a fraction", "DEVOPSTIC_BODY_LIMIT", "1.5", `DEVOPSTIC_BODY_LIMIT: "1.5" is not a whole number`},
		{"a unit after a number", "DEVOPSTIC_BODY_LIMIT", "1MB", `DEVOPSTIC_BODY_LIMIT: "1MB" is not a whole number`},
		{"spaces around a number", "DEVOPSTIC_LOGIN_ATTEMPTS", " 10", `DEVOPSTIC_LOGIN_ATTEMPTS: " 10" is not a whole number`},
		{"port not a number", "DEVOPSTIC_DATABASE_PORT", "pg", `DEVOPSTIC_DATABASE_PORT: "pg" is not a whole number`},
		{"int too large", "DEVOPSTIC_WRITER_BATCH_SIZE", "3000000000",
			`DEVOPSTIC_WRITER_BATCH_SIZE: "3000000000" is too large: at most 2147483647`},
		{"int32 too large", "DEVOPSTIC_DATABASE_MAX_CONNS", "3000000000",
			`DEVOPSTIC_DATABASE_MAX_CONNS: "3000000000" is too large: at most 2147483647`},
		{"int32 too small", "DEVOPSTIC_DATABASE_MAX_CONNS", "-3000000000",
			`DEVOPSTIC_DATABASE_MAX_CONNS: "-3000000000" is too small: at least -2147483648`},
		{"int64 with a unit", "DEVOPSTIC_STREAM_MAX_BYTES", "10GB", `DEVOPSTIC_STREAM_MAX_BYTES: "10GB" is not a whole number`},
		{"duration in words", "DEVOPSTIC_TOKEN_TTL", "a day", `DEVOPSTIC_TOKEN_TTL: "a day" is not a duration such as 90s, 15m or 24h`},
		{"duration without a unit", "DEVOPSTIC_WRITER_ACK_WAIT", "30", `DEVOPSTIC_WRITER_ACK_WAIT: "30" is not a duration such as 90s, 15m or 24h`},
		{"duration in days", "DEVOPSTIC_STREAM_MAX_AGE", "365d", `DEVOPSTIC_STREAM_MAX_AGE: "365d" is not a duration such as 90s, 15m or 24h`},
		{"duration too long", "DEVOPSTIC_STREAM_DUPLICATE_WINDOW", "9999999h", `DEVOPSTIC_STREAM_DUPLICATE_WINDOW: "9999999h" is not a duration such as 90s, 15m or 24h`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c config.AllInOne // every variable is in it
			err := config.Parse(&c, map[string]string{tt.variable: tt.value})
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.NotContains(t, err.Error(), "field", "the Go field is not the user's word")
		})
	}
}

// kinds has a field of every kind a configuration may grow, some in two places under the
// same Go name, as config's own structs have (Password, AdminAddr, Secrets).
type kinds struct {
	Flag    bool            `env:"DEVOPSTIC_TEST_FLAG"`
	Count   uint            `env:"DEVOPSTIC_TEST_COUNT"`
	Small   int8            `env:"DEVOPSTIC_TEST_SMALL"`
	Ratio   float64         `env:"DEVOPSTIC_TEST_RATIO"`
	Delays  []time.Duration `env:"DEVOPSTIC_TEST_DELAYS" envSeparator:","`
	Sizes   []int           `env:"DEVOPSTIC_TEST_SIZES" envSeparator:";"`
	Names   []string        `env:"DEVOPSTIC_TEST_NAMES" envSeparator:","`
	Level   level           `env:"DEVOPSTIC_TEST_LEVEL"`
	Default int             `env:"DEVOPSTIC_TEST_DEFAULT" envDefault:"7"`
	Primary struct {
		Port int `env:"DEVOPSTIC_TEST_PRIMARY_PORT"`
	}
	Replica replica `envPrefix:"DEVOPSTIC_TEST_REPLICA_"`
}

type replica struct {
	Port int `env:"PORT"`
}

// level is a named integer: a type of its own, parsed as its kind.
type level int

func TestParseKinds(t *testing.T) {
	t.Parallel()
	var k kinds
	require.NoError(t, config.Parse(&k, map[string]string{
		"DEVOPSTIC_TEST_FLAG":         "true",
		"DEVOPSTIC_TEST_COUNT":        "3",
		"DEVOPSTIC_TEST_SMALL":        "-128",
		"DEVOPSTIC_TEST_RATIO":        "0.25",
		"DEVOPSTIC_TEST_DELAYS":       "1s,1m",
		"DEVOPSTIC_TEST_SIZES":        "1;2",
		"DEVOPSTIC_TEST_NAMES":        "a, b",
		"DEVOPSTIC_TEST_LEVEL":        "2",
		"DEVOPSTIC_TEST_DEFAULT":      "",
		"DEVOPSTIC_TEST_PRIMARY_PORT": "5432",
		"DEVOPSTIC_TEST_REPLICA_PORT": "5433",
	}))
	require.True(t, k.Flag)
	require.Equal(t, uint(3), k.Count)
	require.Equal(t, int8(-128), k.Small)
	require.Equal(t, 0.25, k.Ratio)
	require.Equal(t, []time.Duration{time.Second, time.Minute}, k.Delays)
	require.Equal(t, []int{1, 2}, k.Sizes)
	require.Equal(t, []string{"a", " b"}, k.Names)
	require.Equal(t, level(2), k.Level)
	require.Equal(t, 7, k.Default, "empty is the default")
	require.Equal(t, 5432, k.Primary.Port)
	require.Equal(t, 5433, k.Replica.Port)
}

// Every kind of parse error, through Parse, in the user's words.
func TestParseErrorsOfEveryKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		variable string
		value    string
		want     string
	}{
		{"bool", "DEVOPSTIC_TEST_FLAG", "yes", `DEVOPSTIC_TEST_FLAG: "yes" is not true or false`},
		{"bool, on", "DEVOPSTIC_TEST_FLAG", "on", `DEVOPSTIC_TEST_FLAG: "on" is not true or false`},
		{"unsigned, negative", "DEVOPSTIC_TEST_COUNT", "-1", `DEVOPSTIC_TEST_COUNT: "-1" is not a whole number of 0 or more`},
		{"unsigned, too large", "DEVOPSTIC_TEST_COUNT", "5000000000", `DEVOPSTIC_TEST_COUNT: "5000000000" is too large: at most 4294967295`},
		{"int8, too large", "DEVOPSTIC_TEST_SMALL", "128", `DEVOPSTIC_TEST_SMALL: "128" is too large: at most 127`},
		{"float", "DEVOPSTIC_TEST_RATIO", "a quarter", `DEVOPSTIC_TEST_RATIO: "a quarter" is not a number`},
		{"float, a percentage", "DEVOPSTIC_TEST_RATIO", "25%", `DEVOPSTIC_TEST_RATIO: "25%" is not a number`},
		{"list of durations: the bad item, in its list", "DEVOPSTIC_TEST_DELAYS", "1s,soon,1m",
			`DEVOPSTIC_TEST_DELAYS: "soon" (in "1s,soon,1m") is not a duration such as 90s, 15m or 24h`},
		{"list of durations: an empty item", "DEVOPSTIC_TEST_DELAYS", "1s,",
			`DEVOPSTIC_TEST_DELAYS: "" (in "1s,") is not a duration such as 90s, 15m or 24h`},
		{"list of whole numbers, its own separator", "DEVOPSTIC_TEST_SIZES", "1;2,3",
			`DEVOPSTIC_TEST_SIZES: "2,3" (in "1;2,3") is not a whole number`},
		{"a one-item list is not repeated", "DEVOPSTIC_TEST_SIZES", "x", `DEVOPSTIC_TEST_SIZES: "x" is not a whole number`},
		{"a named type, parsed as its kind", "DEVOPSTIC_TEST_LEVEL", "loud", `DEVOPSTIC_TEST_LEVEL: "loud" is not a whole number`},
		{"a nested struct's variable", "DEVOPSTIC_TEST_PRIMARY_PORT", "pg", `DEVOPSTIC_TEST_PRIMARY_PORT: "pg" is not a whole number`},
		{"the same Go field under a prefix", "DEVOPSTIC_TEST_REPLICA_PORT", "pg", `DEVOPSTIC_TEST_REPLICA_PORT: "pg" is not a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var k kinds
			err := config.Parse(&k, map[string]string{tt.variable: tt.value})
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.NotContains(t, err.Error(), "field")
		})
	}
}

// Every bad variable is reported at once, each on a line of its own.
func TestParseErrorsTogether(t *testing.T) {
	t.Parallel()
	var c config.AllInOne
	err := config.Parse(&c, map[string]string{
		"DEVOPSTIC_MAX_BATCH":         "lots",
		"DEVOPSTIC_TOKEN_TTL":         "a day",
		"DEVOPSTIC_WRITER_BATCH_SIZE": "big",
		"DEVOPSTIC_HTTP_ADDR":         ":9000",
	})
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Contains(t, lines, `DEVOPSTIC_MAX_BATCH: "lots" is not a whole number`)
	require.Contains(t, lines, `DEVOPSTIC_TOKEN_TTL: "a day" is not a duration such as 90s, 15m or 24h`)
	require.Contains(t, lines, `DEVOPSTIC_WRITER_BATCH_SIZE: "big" is not a whole number`)
	require.Len(t, lines, 4, "a first line, then one per variable: %q", lines)
}

func TestConnString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		db   config.Database
		want string
	}{
		{
			name: "URL verbatim",
			db: config.Database{
				URL:  "postgres://other:secret@pg.internal:6432/prod?sslmode=verify-full&application_name=x",
				Host: "ignored", Port: 1, Username: "ignored", Password: "ignored", Name: "ignored", SSLMode: "disable",
			},
			want: "postgres://other:secret@pg.internal:6432/prod?sslmode=verify-full&application_name=x",
		},
		{
			name: "from parts",
			db:   config.Database{Host: "db.example", Port: 5433, Username: "user", Password: "pass", Name: "metrics", SSLMode: "prefer"},
			want: "postgres://user:pass@db.example:5433/metrics?sslmode=prefer",
		},
		{
			name: "password with special characters",
			db:   config.Database{Host: "localhost", Port: 5432, Username: "devopstic", Password: "p@ss/word", Name: "devopstic", SSLMode: "prefer"},
			want: "postgres://devopstic:p%40ss%2Fword@localhost:5432/devopstic?sslmode=prefer",
		},
		{
			name: "password with colon and question mark",
			db:   config.Database{Host: "localhost", Port: 5432, Username: "u", Password: "a:b?c", Name: "d", SSLMode: "disable"},
			want: "postgres://u:a%3Ab%3Fc@localhost:5432/d?sslmode=disable",
		},
		{
			name: "no password",
			db:   config.Database{Host: "localhost", Port: 5432, Username: "u", Name: "d", SSLMode: "prefer"},
			want: "postgres://u@localhost:5432/d?sslmode=prefer",
		},
		{
			name: "IPv6 host",
			db:   config.Database{Host: "::1", Port: 5432, Username: "u", Name: "d", SSLMode: "prefer"},
			want: "postgres://u@[::1]:5432/d?sslmode=prefer",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.db.ConnString())
		})
	}
}

// A password round-trips through the URL whatever it holds.
func TestConnStringPasswordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"p@ss/word", "a:b?c#d%e f", "ünïcode&=+;$,"} {
		db := config.Database{Host: "h", Port: 5432, Username: "u", Password: pw, Name: "n", SSLMode: "prefer"}
		u, err := url.Parse(db.ConnString())
		require.NoError(t, err, pw)
		got, ok := u.User.Password()
		require.True(t, ok)
		require.Equal(t, pw, got)
		require.Equal(t, "h:5432", u.Host)
		require.Equal(t, "/n", u.Path)
	}
}

func TestIngestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		set       map[string]string
		unset     []string
		wantVars  []string // every variable the error must name; none means valid
		wantNotIn []string // variables the error must not name
	}{
		{name: "valid"},
		{
			name:     "no JWT secret",
			unset:    []string{"DEVOPSTIC_JWT_SECRET"},
			wantVars: []string{"DEVOPSTIC_JWT_SECRET"},
		},
		{
			name:      "short JWT secret",
			set:       map[string]string{"DEVOPSTIC_JWT_SECRET": secret[:31]},
			wantVars:  []string{"DEVOPSTIC_JWT_SECRET", "31 bytes"},
			wantNotIn: []string{"DEVOPSTIC_USERNAME"},
		},
		{
			name:      "missing username",
			unset:     []string{"DEVOPSTIC_USERNAME"},
			wantVars:  []string{"DEVOPSTIC_USERNAME"},
			wantNotIn: []string{"DEVOPSTIC_JWT_SECRET"},
		},
		{
			name:     "missing password",
			unset:    []string{"DEVOPSTIC_PASSWORD"},
			wantVars: []string{"DEVOPSTIC_PASSWORD"},
		},
		{
			name:  "no configured login: only database users log in",
			unset: []string{"DEVOPSTIC_USERNAME", "DEVOPSTIC_PASSWORD"},
		},
		{
			name:     "everything missing, reported together",
			unset:    []string{"DEVOPSTIC_JWT_SECRET", "DEVOPSTIC_PASSWORD"},
			set:      map[string]string{"DEVOPSTIC_MAX_BATCH": "0", "DEVOPSTIC_TOKEN_TTL": "30s"},
			wantVars: []string{"DEVOPSTIC_JWT_SECRET", "DEVOPSTIC_USERNAME", "DEVOPSTIC_MAX_BATCH", "DEVOPSTIC_TOKEN_TTL"},
		},
		{
			name: "two JWT keys, for a rotation",
			set:  map[string]string{"DEVOPSTIC_JWT_SECRET": secret + "," + strings.Repeat("n", 32)},
		},
		{
			name:     "a short key among several",
			set:      map[string]string{"DEVOPSTIC_JWT_SECRET": secret + ", short"},
			wantVars: []string{"DEVOPSTIC_JWT_SECRET", "key 2 of 2 is 5 bytes"},
		},
		{
			name:     "an empty key among several",
			set:      map[string]string{"DEVOPSTIC_JWT_SECRET": secret + ","},
			wantVars: []string{"DEVOPSTIC_JWT_SECRET", "key 2 of 2 is 0 bytes"},
		},
		{
			name:     "bad login throttle",
			set:      map[string]string{"DEVOPSTIC_LOGIN_ATTEMPTS": "-1", "DEVOPSTIC_LOGIN_WINDOW": "0s"},
			wantVars: []string{"DEVOPSTIC_LOGIN_ATTEMPTS", "DEVOPSTIC_LOGIN_WINDOW"},
		},
		{
			name: "admin address and a trusted proxy",
			set: map[string]string{"DEVOPSTIC_ADMIN_ADDR": "127.0.0.1:9090", "DEVOPSTIC_PROXY_HEADER": "X-Real-IP",
				"DEVOPSTIC_TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.1"},
		},
		{
			name:     "bad admin address and proxies",
			set:      map[string]string{"DEVOPSTIC_ADMIN_ADDR": "9090", "DEVOPSTIC_TRUSTED_PROXIES": "10.0.0.0/33"},
			wantVars: []string{"DEVOPSTIC_ADMIN_ADDR", "DEVOPSTIC_TRUSTED_PROXIES", "DEVOPSTIC_PROXY_HEADER"},
		},
		{
			name:     "bad HTTP address",
			set:      map[string]string{"DEVOPSTIC_HTTP_ADDR": "localhost"},
			wantVars: []string{"DEVOPSTIC_HTTP_ADDR"},
		},
		{
			name:     "duplicate window longer than max age",
			set:      map[string]string{"DEVOPSTIC_STREAM_DUPLICATE_WINDOW": "48h", "DEVOPSTIC_STREAM_MAX_AGE": "24h"},
			wantVars: []string{"DEVOPSTIC_STREAM_DUPLICATE_WINDOW"},
		},
		{
			name:     "unknown log level",
			set:      map[string]string{"DEVOPSTIC_LOG_LEVEL": "chatty"},
			wantVars: []string{"DEVOPSTIC_LOG_LEVEL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			environ := validEnv()
			for _, k := range tt.unset {
				delete(environ, k)
			}
			for k, v := range tt.set {
				environ[k] = v
			}
			var c config.Ingest
			require.NoError(t, config.Parse(&c, environ))
			err := c.Validate()
			if len(tt.wantVars) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, v := range tt.wantVars {
				require.Contains(t, err.Error(), v)
			}
			for _, v := range tt.wantNotIn {
				require.NotContains(t, err.Error(), v)
			}
		})
	}
}

func TestIngestValidateNATSURL(t *testing.T) {
	t.Parallel()
	var c config.Ingest
	require.NoError(t, config.Parse(&c, validEnv()))
	require.NoError(t, c.Validate())
	require.Equal(t, "nats://127.0.0.1:4222", c.NATS.URL)

	environ := validEnv()
	environ["DEVOPSTIC_NATS_URL"] = "nats://a:4222,nats://b:4222"
	var given config.Ingest
	require.NoError(t, config.Parse(&given, environ))
	require.NoError(t, given.Validate())
	require.Equal(t, "nats://a:4222,nats://b:4222", given.NATS.URL)
}

// NATS's user and password go together; either alone is a mistake worth stopping for.
func TestNATSCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		user, password string
		wantErr        string
	}{
		{"", "", ""},
		{"devopstic-writer", "s3cret", ""},
		{"devopstic-writer", "", `DEVOPSTIC_NATS_USER is "devopstic-writer" but DEVOPSTIC_NATS_PASSWORD is empty`},
		{"", "s3cret", "DEVOPSTIC_NATS_PASSWORD is set but DEVOPSTIC_NATS_USER is not"},
	} {
		environ := map[string]string{"DEVOPSTIC_NATS_URL": "nats://nats:4222", "DEVOPSTIC_NATS_USER": tc.user, "DEVOPSTIC_NATS_PASSWORD": tc.password}
		var w config.Writer
		require.NoError(t, config.Parse(&w, environ))
		require.Equal(t, tc.user, w.NATS.User)
		require.Equal(t, tc.password, w.NATS.Password)
		err := w.Validate()
		if tc.wantErr == "" {
			require.NoError(t, err)
		} else {
			require.ErrorContains(t, err, tc.wantErr)
			require.NotContains(t, err.Error(), "s3cret", "a password is never in an error")
		}
	}
}

func TestWriterAndAllInOneValidate(t *testing.T) {
	t.Parallel()
	var w config.Writer
	require.NoError(t, config.Parse(&w, map[string]string{}))
	require.NoError(t, w.Validate())
	require.Equal(t, "nats://127.0.0.1:4222", w.NATS.URL)

	var a config.AllInOne
	require.NoError(t, config.Parse(&a, validEnv()))
	require.NoError(t, a.Validate())

	environ := validEnv()
	environ["DEVOPSTIC_NATS_SYNC_INTERVAL"] = "sometimes"
	var bad config.AllInOne
	require.NoError(t, config.Parse(&bad, environ))
	err := bad.Validate()
	require.Error(t, err)
	require.Contains(t, err.Error(), "DEVOPSTIC_NATS_SYNC_INTERVAL")
}

func TestEmbeddedSync(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value      string
		wantEvery  time.Duration
		wantAlways bool
		wantErr    bool
	}{
		{value: "always", wantAlways: true},
		{value: "Always", wantAlways: true},
		{value: "2m", wantEvery: 2 * time.Minute},
		{value: "1s", wantEvery: time.Second},
		{value: "nonsense", wantErr: true},
		{value: "0s", wantErr: true},
		{value: "-1m", wantErr: true},
		{value: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			every, always, err := config.Embedded{SyncInterval: tt.value}.Sync()
			if tt.wantErr {
				require.Error(t, err)
				require.Contains(t, err.Error(), "DEVOPSTIC_NATS_SYNC_INTERVAL")
				require.True(t, strings.Contains(err.Error(), `"`+tt.value+`"`), err.Error())
				require.False(t, always)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantEvery, every)
			require.Equal(t, tt.wantAlways, always)
		})
	}
}

func TestWebhookSources(t *testing.T) {
	t.Parallel()
	var c config.AllInOne
	require.NoError(t, config.Parse(&c, map[string]string{}))
	require.Empty(t, c.GitLab.Secrets, "GitLab is off until a secret is set")
	require.Equal(t, "incident", c.GitLab.IncidentLabel)
	require.Empty(t, c.PagerDuty.Secrets)
	require.Empty(t, c.Alertmanager.Tokens)
	require.Equal(t, "severity=critical", c.Alertmanager.IncidentLabel)

	env := validEnv()
	env["DEVOPSTIC_GITLAB_WEBHOOK_SECRET"] = "old,new"
	env["DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET"] = "pd1,pd2"
	env["DEVOPSTIC_ALERTMANAGER_TOKEN"] = "am"
	env["DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL"] = "severity=~critical|page,team=web"
	require.NoError(t, config.Parse(&c, env))
	require.NoError(t, c.Validate())
	in := c.Ingest()
	require.Equal(t, []string{"old", "new"}, in.GitLab.Secrets)
	require.Equal(t, []string{"pd1", "pd2"}, in.PagerDuty.Secrets)
	require.Equal(t, []string{"am"}, in.Alertmanager.Tokens)
	require.Equal(t, "severity=~critical|page,team=web", in.Alertmanager.IncidentLabel)

	env["DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL"] = "critical"
	var bad config.Ingest
	require.NoError(t, config.Parse(&bad, env))
	err := bad.Validate()
	require.ErrorContains(t, err, "DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL")
	require.ErrorContains(t, err, "name=value")
}

func TestJWTSecrets(t *testing.T) {
	t.Parallel()
	a := config.Auth{JWTSecret: "first-key , second-key"}
	require.Equal(t, []string{"first-key", "second-key"}, a.JWTSecrets())
	require.Equal(t, []string{"one"}, config.Auth{JWTSecret: "one"}.JWTSecrets())
}

// secrets has fields of every kind under the names of secrets, and some read from files.
type secrets struct {
	Token    int        `env:"DEVOPSTIC_TEST_TOKEN"`
	Password bool       `env:"DEVOPSTIC_TEST_PASSWORD"`
	Keys     []int      `env:"DEVOPSTIC_TEST_SIGNING_KEYS"`
	URL      float64    `env:"DEVOPSTIC_TEST_URL"`
	Secret   slog.Level `env:"DEVOPSTIC_TEST_SECRET"`
	Level    slog.Level `env:"DEVOPSTIC_TEST_SLOG_LEVEL"`
	FromFile int        `env:"DEVOPSTIC_TEST_FROM_FILE,file"`
	Missing  string     `env:"DEVOPSTIC_TEST_MISSING,file"`
	Required string     `env:"DEVOPSTIC_TEST_REQUIRED,required"`
	NotEmpty string     `env:"DEVOPSTIC_TEST_NOT_EMPTY,notEmpty"`
}

func TestParseNeverShowsASecret(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "from-file")
	require.NoError(t, os.WriteFile(file, []byte("hunter2-in-a-file"), 0o600))
	var s secrets
	err := config.Parse(&s, map[string]string{
		"DEVOPSTIC_TEST_TOKEN":        "hunter2-token",
		"DEVOPSTIC_TEST_PASSWORD":     "hunter2-password",
		"DEVOPSTIC_TEST_SIGNING_KEYS": "1,hunter2-key",
		"DEVOPSTIC_TEST_URL":          "postgres://u:hunter2-url@db",
		"DEVOPSTIC_TEST_SECRET":       "hunter2-secret",
		"DEVOPSTIC_TEST_SLOG_LEVEL":   "chatty",
		"DEVOPSTIC_TEST_FROM_FILE":    file,
		"DEVOPSTIC_TEST_MISSING":      "/no/such/file",
		"DEVOPSTIC_TEST_NOT_EMPTY":    "",
	})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")
	lines := strings.Split(err.Error(), "\n")
	require.Contains(t, lines, "DEVOPSTIC_TEST_TOKEN: its value is not a whole number")
	require.Contains(t, lines, "DEVOPSTIC_TEST_PASSWORD: its value is not true or false")
	require.Contains(t, lines, "DEVOPSTIC_TEST_SIGNING_KEYS: its value is not a whole number")
	require.Contains(t, lines, "DEVOPSTIC_TEST_URL: its value is not a number")
	require.Contains(t, lines, "DEVOPSTIC_TEST_SECRET: its value cannot be read as slog.Level")
	require.Contains(t, lines, `DEVOPSTIC_TEST_SLOG_LEVEL: "chatty" cannot be read as slog.Level: slog: level string "chatty": unknown name`)
	require.Contains(t, lines, `DEVOPSTIC_TEST_FROM_FILE: the content of "`+file+`" is not a whole number`)
	require.Contains(t, lines, `DEVOPSTIC_TEST_MISSING: the file "/no/such/file" cannot be read: open /no/such/file: no such file or directory`)
	require.Contains(t, lines, "DEVOPSTIC_TEST_REQUIRED is not set")
	require.Contains(t, lines, "DEVOPSTIC_TEST_NOT_EMPTY is empty")
}

// pkg/config reads no DEVOPSTIC_*_FILE variable: the images' entrypoint
// (deployments/docker/entrypoint.sh) turns each into its DEVOPSTIC_* variable, and says itself
// when a file cannot be read. So no field reads a file, and a _FILE variable here is ignored.
func TestNoVariableReadsAFile(t *testing.T) {
	t.Parallel()
	for _, cfg := range []any{&config.Ingest{}, &config.Writer{}, &config.AllInOne{}} {
		params, err := env.GetFieldParams(cfg)
		require.NoError(t, err)
		require.NotEmpty(t, params)
		for _, p := range params {
			require.False(t, p.LoadFile, "%s reads a file: its errors must then name the path and never the content", p.Key)
		}
	}
	var c config.AllInOne
	require.NoError(t, config.Parse(&c, map[string]string{"DEVOPSTIC_JWT_SECRET_FILE": "/run/secrets/jwt"}))
	require.Empty(t, c.Auth.JWTSecret)
}

// Every validation error names the variable and the value it was given; a secret only by name.
func TestValidateErrorsNameTheValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"HTTP address", map[string]string{"DEVOPSTIC_HTTP_ADDR": "localhost"},
			`DEVOPSTIC_HTTP_ADDR must be host:port such as 127.0.0.1:8080, not "localhost"`},
		{"body limit too small", map[string]string{"DEVOPSTIC_BODY_LIMIT": "100"},
			"DEVOPSTIC_BODY_LIMIT must be at least 1024 bytes, not 100"},
		{"body limit too large", map[string]string{"DEVOPSTIC_BODY_LIMIT": "67076097"},
			"DEVOPSTIC_BODY_LIMIT must be at most 67076096 bytes (NATS takes messages of at most 64 MiB, headers included), not 67076097"},
		{"max batch", map[string]string{"DEVOPSTIC_MAX_BATCH": "0"},
			"DEVOPSTIC_MAX_BATCH must be at least 1, not 0"},
		{"admin address", map[string]string{"DEVOPSTIC_ADMIN_ADDR": "9090"},
			`DEVOPSTIC_ADMIN_ADDR must be host:port such as 127.0.0.1:9090, not "9090"`},
		{"admin address on the public one", map[string]string{"DEVOPSTIC_ADMIN_ADDR": "127.0.0.1:8080"},
			`DEVOPSTIC_ADMIN_ADDR must differ from DEVOPSTIC_HTTP_ADDR (both are "127.0.0.1:8080")`},
		{"trusted proxy", map[string]string{"DEVOPSTIC_TRUSTED_PROXIES": "10.0.0.0/8,10.0.0.0/33", "DEVOPSTIC_PROXY_HEADER": "X-Real-IP"},
			`DEVOPSTIC_TRUSTED_PROXIES: "10.0.0.0/33" is neither an address nor a CIDR range`},
		{"proxy header alone", map[string]string{"DEVOPSTIC_PROXY_HEADER": "X-Real-IP"},
			`DEVOPSTIC_PROXY_HEADER is "X-Real-IP" but DEVOPSTIC_TRUSTED_PROXIES is empty: the header is believed only from those proxies`},
		{"Grafana URL without a scheme", map[string]string{"DEVOPSTIC_GRAFANA_URL": "grafana.example.com"},
			`DEVOPSTIC_GRAFANA_URL must be an http or https address such as https://grafana.example.com, without credentials, not "grafana.example.com"`},
		{"trusted proxies alone", map[string]string{"DEVOPSTIC_TRUSTED_PROXIES": "10.0.0.1"},
			`DEVOPSTIC_TRUSTED_PROXIES is "10.0.0.1" but DEVOPSTIC_PROXY_HEADER is empty: set the header holding the client's address (X-Real-IP)`},
		{"username alone", map[string]string{"DEVOPSTIC_PASSWORD": ""},
			`DEVOPSTIC_USERNAME is "admin" but DEVOPSTIC_PASSWORD is empty: set both (an admin login for POST /tokens) or neither (only the database's users log in: devopstic user add)`},
		{"password alone", map[string]string{"DEVOPSTIC_USERNAME": ""},
			"DEVOPSTIC_PASSWORD is set but DEVOPSTIC_USERNAME is empty: set both (an admin login for POST /tokens) or neither (only the database's users log in: devopstic user add)"},
		{"username with a control character", map[string]string{"DEVOPSTIC_USERNAME": "ad\x01min"},
			`DEVOPSTIC_USERNAME: "ad\x01min": contains a control character`},
		{"token TTL", map[string]string{"DEVOPSTIC_TOKEN_TTL": "30s"},
			"DEVOPSTIC_TOKEN_TTL must be at least 1m, not 30s"},
		{"refresh window", map[string]string{"DEVOPSTIC_TOKEN_REFRESH_WINDOW": "-1h"},
			"DEVOPSTIC_TOKEN_REFRESH_WINDOW must not be negative, not -1h0m0s"},
		{"login attempts", map[string]string{"DEVOPSTIC_LOGIN_ATTEMPTS": "-1"},
			"DEVOPSTIC_LOGIN_ATTEMPTS must not be negative (0 turns the limit off), not -1"},
		{"login user attempts", map[string]string{"DEVOPSTIC_LOGIN_USER_ATTEMPTS": "-2"},
			"DEVOPSTIC_LOGIN_USER_ATTEMPTS must not be negative (0 turns the limit off), not -2"},
		{"login window", map[string]string{"DEVOPSTIC_LOGIN_WINDOW": "500ms"},
			"DEVOPSTIC_LOGIN_WINDOW must be at least 1s, not 500ms"},
		{"alertmanager selector", map[string]string{"DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL": "severity=critical,page"},
			`DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL: "page" is not name=value or name=~regexp (such as severity=critical)`},
		{"NATS user alone", map[string]string{"DEVOPSTIC_NATS_USER": "devopstic-ingest"},
			`DEVOPSTIC_NATS_USER is "devopstic-ingest" but DEVOPSTIC_NATS_PASSWORD is empty: set both`},
		{"stream replicas", map[string]string{"DEVOPSTIC_STREAM_REPLICAS": "7"},
			"DEVOPSTIC_STREAM_REPLICAS must be between 1 and 5, not 7"},
		{"stream max age", map[string]string{"DEVOPSTIC_STREAM_MAX_AGE": "-1h"},
			"DEVOPSTIC_STREAM_MAX_AGE must not be negative (0 keeps messages forever), not -1h0m0s"},
		{"duplicate window", map[string]string{"DEVOPSTIC_STREAM_DUPLICATE_WINDOW": "0s"},
			"DEVOPSTIC_STREAM_DUPLICATE_WINDOW must be positive, such as 24h, not 0s"},
		{"duplicate window over the max age", map[string]string{"DEVOPSTIC_STREAM_DUPLICATE_WINDOW": "48h", "DEVOPSTIC_STREAM_MAX_AGE": "24h"},
			"DEVOPSTIC_STREAM_DUPLICATE_WINDOW must not exceed DEVOPSTIC_STREAM_MAX_AGE: 48h0m0s is longer than 24h0m0s"},
		{"publish timeout", map[string]string{"DEVOPSTIC_PUBLISH_TIMEOUT": "-5s"},
			"DEVOPSTIC_PUBLISH_TIMEOUT must be positive, such as 5s, not -5s"},
		{"writer batch size", map[string]string{"DEVOPSTIC_WRITER_BATCH_SIZE": "10001"},
			"DEVOPSTIC_WRITER_BATCH_SIZE must be between 1 and 10000, not 10001"},
		{"writer batch wait", map[string]string{"DEVOPSTIC_WRITER_BATCH_WAIT": "-50ms"},
			"DEVOPSTIC_WRITER_BATCH_WAIT must not be negative, not -50ms"},
		{"writer max deliver", map[string]string{"DEVOPSTIC_WRITER_MAX_DELIVER": "0"},
			"DEVOPSTIC_WRITER_MAX_DELIVER must be at least 1, not 0"},
		{"writer ack wait", map[string]string{"DEVOPSTIC_WRITER_ACK_WAIT": "10ms"},
			"DEVOPSTIC_WRITER_ACK_WAIT must be at least 1s, not 10ms"},
		{"writer retry max", map[string]string{"DEVOPSTIC_WRITER_RETRY_MAX": "1ms"},
			"DEVOPSTIC_WRITER_RETRY_MAX must be at least 100ms, not 1ms"},
		{"sync interval", map[string]string{"DEVOPSTIC_NATS_SYNC_INTERVAL": "sometimes"},
			`DEVOPSTIC_NATS_SYNC_INTERVAL must be "always" or a positive duration such as 2m, not "sometimes"`},
		{"log level", map[string]string{"DEVOPSTIC_LOG_LEVEL": "chatty"},
			`DEVOPSTIC_LOG_LEVEL must be debug, info, warn or error, not "chatty"`},
		{"log format", map[string]string{"DEVOPSTIC_LOG_FORMAT": "xml"},
			`DEVOPSTIC_LOG_FORMAT must be text or json, not "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			environ := validEnv()
			for k, v := range tt.set {
				environ[k] = v
			}
			var c config.AllInOne
			require.NoError(t, config.Parse(&c, environ))
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, strings.Split(err.Error(), "\n"), tt.want)
		})
	}
}

func TestWriterValidateErrorsNameTheValue(t *testing.T) {
	t.Parallel()
	var w config.Writer
	require.NoError(t, config.Parse(&w, map[string]string{"DEVOPSTIC_ADMIN_ADDR": "9090", "DEVOPSTIC_WRITER_MAX_DELIVER": "-1"}))
	err := w.Validate()
	require.ErrorContains(t, err, `DEVOPSTIC_ADMIN_ADDR must be host:port such as 127.0.0.1:9090, not "9090"`)
	require.ErrorContains(t, err, "DEVOPSTIC_WRITER_MAX_DELIVER must be at least 1, not -1")
}

// No error shows a secret's value: the keys, the passwords, the webhooks' secrets and tokens.
func TestValidateNeverShowsASecret(t *testing.T) {
	t.Parallel()
	environ := map[string]string{
		"DEVOPSTIC_JWT_SECRET":               "hunter2-jwt, hunter2-jwt-2",
		"DEVOPSTIC_PASSWORD":                 "hunter2-login",
		"DEVOPSTIC_NATS_PASSWORD":            "hunter2-nats",
		"DEVOPSTIC_DATABASE_PASSWORD":        "hunter2-db",
		"DEVOPSTIC_DATABASE_URL":             "postgres://u:hunter2-url@db/x",
		"DEVOPSTIC_NATS_URL":                 "nats://u:hunter2-nats-url@nats:4222",
		"DEVOPSTIC_GITHUB_WEBHOOK_SECRET":    "hunter2-github",
		"DEVOPSTIC_GITLAB_WEBHOOK_SECRET":    "hunter2-gitlab",
		"DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET": "hunter2-pagerduty",
		"DEVOPSTIC_ALERTMANAGER_TOKEN":       "hunter2-alertmanager",
		"DEVOPSTIC_MAX_BATCH":                "0", // and other errors beside them
		"DEVOPSTIC_HTTP_ADDR":                "nowhere",
	}
	for _, cfg := range []interface{ Validate() error }{&config.Ingest{}, &config.Writer{}, &config.AllInOne{}} {
		require.NoError(t, config.Parse(cfg, environ))
		err := cfg.Validate()
		require.Error(t, err, "%T", cfg)
		require.NotContains(t, err.Error(), "hunter2", "%T", cfg)
	}
}
