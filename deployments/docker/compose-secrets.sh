#!/bin/sh
# docker-compose.yml's one-shot "secrets" service (image target compose-secrets of the Dockerfile,
# user 10000). For each secret: the value .env gives, when it gives one; else the value written
# on an earlier start; else, on an upgrade, the one in the single volume "secrets" of earlier
# versions; else a new random one (alphanumeric, at least 40 characters: more than
# DEVOPSTIC_JWT_SECRET's 32 bytes, and safe in any URL).
#
# Each service gets the secrets it reads and no other, in a directory of its own (a volume that
# only it mounts, at /run/secrets/devopstic): Grafana the read-only role's password and its admin
# password, not the JWT key or the database owner's password. The files are 0440, in the group of
# their directory, which the image gives to a group the service has; no one else reads them.
#
# NATS has three users, one per DevOpstic role (deployments/nats/nats.conf): NATS gets the three
# passwords, the ingest, the writer and migrate (which also runs the operator commands, as the
# admin) each its own user's.
#
# Postgres takes its passwords when it initialises its volume, on the first start only: to change
# db-password or reader-password later, change them in Postgres too (ALTER ROLE ... PASSWORD).
set -eu

# NATS reads its passwords through its configuration's parser ($DEVOPSTIC_NATS_*_PASSWORD), which
# takes some values for something other than a string: 4k for 4096, true for a boolean, -x for
# a number. A value given in .env must be one it reads as written: 32 or more letters and digits
# (openssl rand -hex 32). Checked before anything is written; the value is not printed.
for var in DEVOPSTIC_NATS_INGEST_PASSWORD DEVOPSTIC_NATS_WRITER_PASSWORD DEVOPSTIC_NATS_ADMIN_PASSWORD; do
	eval "value=\${$var:-}"
	case $value in
	'') ;;
	*[!A-Za-z0-9]*)
		echo "secrets: $var in .env must be letters and digits only (openssl rand -hex 32): NATS's configuration would read it as something else" >&2
		exit 1
		;;
	*)
		if [ "${#value}" -lt 32 ]; then
			echo "secrets: $var in .env must be at least 32 letters and digits (openssl rand -hex 32)" >&2
			exit 1
		fi
		;;
	esac
done

root=${DEVOPSTIC_SECRETS_DIR:-/secrets}
legacy=${DEVOPSTIC_SECRETS_LEGACY_DIR:-/run/secrets/devopstic}

# put NAME VALUE SERVICE...: writes the secret NAME into the directory of each SERVICE.
put() {
	name=$1 value=$2
	shift 2
	for service in "$@"; do
		if [ ! -d "$root/$service" ]; then
			echo "secrets: $root/$service is missing: docker-compose.yml mounts $service's secrets volume there" >&2
			exit 1
		fi
	done
	from="from .env"
	if [ -z "$value" ]; then
		for service in "$@"; do
			if [ -s "$root/$service/$name" ]; then
				value=$(cat "$root/$service/$name") from=kept
				break
			fi
		done
	fi
	if [ -z "$value" ] && [ -s "$legacy/$name" ]; then
		value=$(cat "$legacy/$name") from="kept from the volume secrets of an earlier version"
	fi
	if [ -z "$value" ]; then
		# 48 random bytes, base64 without the URL-unsafe characters and padding.
		value=$(head -c 48 /dev/urandom | base64 | tr -d '\n+/=') from=generated
	fi
	for service in "$@"; do
		dir=$root/$service
		# Readable by its owner alone until it is in its group with its mode, then in place.
		rm -f "$dir/.$name.tmp"
		(umask 0377 && printf '%s' "$value" >"$dir/.$name.tmp")
		chgrp "$(stat -c %g "$dir")" "$dir/.$name.tmp"
		chmod 0440 "$dir/.$name.tmp"
		mv -f "$dir/.$name.tmp" "$dir/$name"
	done
	echo "secrets: $name: $from, for $*"
}

put jwt-secret "${DEVOPSTIC_JWT_SECRET:-}" ingest
put api-password "${DEVOPSTIC_PASSWORD:-}" ingest
put db-password "${DEVOPSTIC_DATABASE_PASSWORD:-}" postgres migrate ingest writer
put reader-password "${DEVOPSTIC_READER_PASSWORD:-}" postgres grafana
put grafana-admin-password "${GRAFANA_ADMIN_PASSWORD:-}" grafana
put nats-ingest-password "${DEVOPSTIC_NATS_INGEST_PASSWORD:-}" nats ingest
put nats-writer-password "${DEVOPSTIC_NATS_WRITER_PASSWORD:-}" nats writer
put nats-admin-password "${DEVOPSTIC_NATS_ADMIN_PASSWORD:-}" nats migrate
