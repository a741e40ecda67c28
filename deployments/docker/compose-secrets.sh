#!/bin/sh
# docker-compose.yml's one-shot "secrets" service. For each secret: the value .env gives, when it
# gives one; else the value generated on an earlier start; else a new random one (alphanumeric,
# at least 40 characters: more than DEVOPSTIC_JWT_SECRET's 32 bytes, and safe in any URL).
# The files are world-readable inside the volume because the containers that read them run as
# different users (postgres, grafana, devopstic); the volume is mounted only where it is needed.
#
# Postgres takes its passwords when it initialises its volume, on the first start only: to change
# db-password or reader-password later, change them in Postgres too (ALTER ROLE ... PASSWORD).
set -eu

dir=${DEVOPSTIC_SECRETS_DIR:-/run/secrets/devopstic}
mkdir -p "$dir"

put() {
	name=$1 value=$2
	if [ -n "$value" ]; then
		printf '%s' "$value" >"$dir/.$name.tmp"
		mv "$dir/.$name.tmp" "$dir/$name"
		echo "secrets: $name: from .env"
	elif [ -s "$dir/$name" ]; then
		echo "secrets: $name: kept"
	else
		# 48 random bytes, base64 without the URL-unsafe characters and padding.
		head -c 48 /dev/urandom | base64 | tr -d '\n+/=' >"$dir/.$name.tmp"
		mv "$dir/.$name.tmp" "$dir/$name"
		echo "secrets: $name: generated"
	fi
	chmod 0444 "$dir/$name"
}

put jwt-secret "${DEVOPSTIC_JWT_SECRET:-}"
put api-password "${DEVOPSTIC_PASSWORD:-}"
put db-password "${DEVOPSTIC_DATABASE_PASSWORD:-}"
put reader-password "${DEVOPSTIC_READER_PASSWORD:-}"
put grafana-admin-password "${GRAFANA_ADMIN_PASSWORD:-}"
