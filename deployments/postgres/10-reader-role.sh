#!/bin/sh
# Creates DevOpstic's read-only role devopstic_reader (reader-role.sql) when the postgres image
# initialises a new data directory (/docker-entrypoint-initdb.d runs on first start only; for an
# existing database run reader-role.sql with psql, as its header says).
#
# The password comes from DEVOPSTIC_READER_PASSWORD, or from the file DEVOPSTIC_READER_PASSWORD_FILE
# names. reader-role.sql is read from DEVOPSTIC_READER_SQL (default /devopstic/reader-role.sql): it
# must not be in /docker-entrypoint-initdb.d itself, where the image would run it without the
# password. POSTGRES_USER and POSTGRES_DB are the image's own variables; the migrations run as
# POSTGRES_USER, which therefore owns the tables.
set -eu

if [ -n "${DEVOPSTIC_READER_PASSWORD_FILE:-}" ]; then
	DEVOPSTIC_READER_PASSWORD=$(cat "$DEVOPSTIC_READER_PASSWORD_FILE")
fi
if [ -z "${DEVOPSTIC_READER_PASSWORD:-}" ]; then
	echo "10-reader-role.sh: set DEVOPSTIC_READER_PASSWORD or DEVOPSTIC_READER_PASSWORD_FILE" >&2
	exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc \
	--username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
	-v reader_password="$DEVOPSTIC_READER_PASSWORD" -v app_role="${POSTGRES_USER:-postgres}" \
	-f "${DEVOPSTIC_READER_SQL:-/devopstic/reader-role.sql}"
