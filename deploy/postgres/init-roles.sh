#!/bin/sh
# The official postgres image runs this once, on an empty data directory (docker-entrypoint-initdb.d):
# deploy/postgres/roles.sql with the owner's, the writer's and the dashboard reader's passwords read from their secret files
# by psql itself (\set with backticks), so no password is on a command line. A missing or empty
# file stops the initialisation, naming it.
set -eu
secrets=${GONGJI_POSTGRES_SECRETS:-/run/secrets}
roles=${GONGJI_POSTGRES_ROLES:-/etc/gongji/postgres/roles.sql}
for name in postgres-owner-password postgres-ledger-password postgres-reader-password; do
  if [ ! -s "$secrets/$name" ]; then
    echo "init-roles: $secrets/$name is missing or empty" >&2
    exit 1
  fi
done
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres <<SQL
\set owner_password \`cat $secrets/postgres-owner-password\`
\set writer_password \`cat $secrets/postgres-ledger-password\`
\set reader_password \`cat $secrets/postgres-reader-password\`
\i $roles
SQL
