#!/bin/sh
# Compose's PostgreSQL with TLS: copies the server's certificate and key (secret files, readable by
# anyone in the container) to WORK_DIR, 0600 and owned by `postgres` as the server demands, then
# starts the server with them and with pg_hba.compose.conf (hostssl and scram-sha-256 only):
#   start.sh CERT KEY WORK_DIR -- docker-entrypoint.sh postgres [ARG...]
set -eu
cert=$1 key=$2 work=$3
shift 3
[ "${1:-}" = -- ] && shift
umask 077
mkdir -p "$work"
cp "$cert" "$work/server.crt"
cp "$key" "$work/server.key"
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
  chown -R postgres:postgres "$work"
fi
exec "$@" -c ssl=on -c "ssl_cert_file=$work/server.crt" -c "ssl_key_file=$work/server.key"
