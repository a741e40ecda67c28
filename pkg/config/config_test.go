package config_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

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

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		variable string
		value    string
	}{
		{"not an integer", "DEVOPSTIC_MAX_BATCH", "many"},
		{"not a duration", "DEVOPSTIC_TOKEN_TTL", "a day"},
		{"port not a number", "DEVOPSTIC_DATABASE_PORT", "pg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c config.Ingest
			err := config.Parse(&c, map[string]string{tt.variable: tt.value})
			require.Error(t, err)
			// The env library names the Go field, not the variable; the bad value is at least quoted.
			require.Contains(t, err.Error(), `"`+tt.value+`"`)
		})
	}
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
