package deployments_test

import (
	"os"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
)

// natsConfigs are the NATS server configurations: compose's single server and the cluster's
// three nodes.
var natsConfigs = []string{"deployments/nats/nats.conf", "deployments/nats/nats-1.conf", "deployments/nats/nats-2.conf", "deployments/nats/nats-3.conf"}

// setNATSPasswords puts the roles' passwords in the environment, where the configurations read
// them, and returns them. Hex, as the files ask, one starting with a digit: a value NATS's
// parser might take for a number.
func setNATSPasswords(t *testing.T) stream.Passwords {
	t.Helper()
	p := stream.Passwords{
		stream.RoleIngest: "0123456789abcdef0123456789abcdef",
		stream.RoleWriter: "9e99aaaabbbbccccddddeeeeffff0000",
		stream.RoleAdmin:  "deadbeefdeadbeefdeadbeefdeadbeef",
	}
	for r, pw := range p {
		t.Setenv(r.PasswordVar(), pw)
	}
	return p
}

// natsUser is a NATS user as a test compares it.
type natsUser struct {
	Password                      string
	PublishAllow, PublishDeny     []string
	SubscribeAllow, SubscribeDeny []string
	Responses                     bool
}

func usersOf(users []*server.User) map[string]natsUser {
	out := map[string]natsUser{}
	for _, u := range users {
		nu := natsUser{Password: u.Password}
		if p := u.Permissions; p != nil {
			if p.Publish != nil {
				nu.PublishAllow, nu.PublishDeny = p.Publish.Allow, p.Publish.Deny
			}
			if p.Subscribe != nil {
				nu.SubscribeAllow, nu.SubscribeDeny = p.Subscribe.Allow, p.Subscribe.Deny
			}
			nu.Responses = p.Response != nil
		}
		out[u.Username] = nu
	}
	return out
}

// The configuration files give DevOpstic's users exactly the permissions pkg/stream defines
// (Role.Permissions, which the embedded server and the tests use), with the passwords of the
// environment, and let nobody in without a user.
func TestNATSConfigurationUsers(t *testing.T) {
	passwords := setNATSPasswords(t) // not parallel: it sets the environment
	want, err := stream.ServerUsers(passwords)
	require.NoError(t, err)
	for _, file := range natsConfigs {
		o, err := server.ProcessConfigFile(repoPath(file))
		require.NoError(t, err, file)
		require.Equal(t, usersOf(want), usersOf(o.Users), "%s: the users and permissions of pkg/stream's Role.Permissions", file)
		require.Empty(t, o.NoAuthUser, "%s: no user for clients without credentials", file)
		require.Empty(t, o.Username, file)
		require.Empty(t, o.Authorization, file)
		require.Empty(t, o.Nkeys, file)
		require.Empty(t, o.Accounts, file)
		require.Equal(t, 4222, o.Port, file)
		require.Equal(t, 8222, o.HTTPPort, file)
		require.True(t, o.JetStream, file)
	}
}

// Without a password in its environment, a server refuses to start.
func TestNATSConfigurationNeedsThePasswords(t *testing.T) {
	for _, r := range stream.Roles {
		t.Run(string(r), func(t *testing.T) {
			setNATSPasswords(t)
			require.NoError(t, os.Unsetenv(r.PasswordVar())) // t.Setenv puts it back
			for _, file := range natsConfigs {
				_, err := server.ProcessConfigFile(repoPath(file))
				require.ErrorContains(t, err, r.PasswordVar(), file)
			}
		})
	}
}
