#!/bin/sh
# The images' entry point: for every DEVOPSTIC_<NAME>_FILE variable, export DEVOPSTIC_<NAME> with
# the content of the file it names (trailing newlines dropped), then run the command. This is how
# docker-compose.yml hands the services their secrets without putting them in the environment of
# `docker inspect`; Kubernetes sets the variables from Secrets directly and needs none of it.
set -eu

for name in $(env | sed -n 's/^\(DEVOPSTIC_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
	eval "file=\${${name}_FILE}"
	if [ ! -r "$file" ]; then
		echo "entrypoint: ${name}_FILE names $file, which cannot be read" >&2
		exit 1
	fi
	value=$(cat "$file")
	export "$name=$value"
	unset "${name}_FILE"
done

exec "$@"
