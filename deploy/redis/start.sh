#!/bin/sh
# Starts Redis with the users of deploy/redis/users.acl.example, each with the SHA-256 of its
# password from a secret file, and TLS only when a certificate is given:
#   start.sh TEMPLATE SECRETS_DIR WORK_DIR [--tls CERT KEY CA] -- SERVER [ARG...]
# SECRETS_DIR holds redis-<service>-password for each user of the template (gongji-<service>); a
# missing or empty one stops start-up, naming it. WORK_DIR receives the ACL file (and a copy of the
# key), 0600, owned by the user `redis` when it exists (the official image drops to it).
set -eu
template=$1 secrets=$2 work=$3
shift 3
umask 077
tls=""
if [ "${1:-}" = --tls ]; then
  cp "$3" "$work/redis.key"
  tls="--port 0 --tls-port 6379 --tls-cert-file $2 --tls-key-file $work/redis.key --tls-ca-cert-file $4 --tls-auth-clients no"
  shift 4
fi
[ "${1:-}" = -- ] && shift
acl="$work/users.acl"
: >"$acl.new"
while IFS= read -r line; do
  case $line in
    *"#<sha256 of "*)
      user=${line#user }
      user=${user%% *}
      file="$secrets/redis-${user#gongji-}-password"
      if [ ! -s "$file" ]; then
        echo "redis: no password for user $user: $file is missing or empty" >&2
        exit 1
      fi
      hash=$(printf %s "$(cat "$file")" | sha256sum | cut -d' ' -f1)
      line=$(printf '%s\n' "$line" | sed "s/#<sha256 of [^>]*>/#$hash/")
      ;;
  esac
  printf '%s\n' "$line" >>"$acl.new"
done <"$template"
mv "$acl.new" "$acl"
if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
  chown redis:redis "$work"/*
fi
# shellcheck disable=SC2086 # the TLS options are words
exec "$@" --aclfile "$acl" $tls
