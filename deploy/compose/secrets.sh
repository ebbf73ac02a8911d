#!/bin/sh
# Makes every secret docker-compose.yml reads, into DIR (created 0700; nothing is
# overwritten, so running it again only adds what is missing):
#   deploy/compose/secrets.sh DIR && export GONGJI_SECRETS_DIR=$(realpath DIR)
# Passwords and keys are random (openssl rand); a CA (ca.key stays in DIR, never mounted) signs
# each server's certificate (kafka-1..3, redis, postgres) and the Kafka administrator's client
# certificate (CN gongji-admin, used by the kafka-setup job over the brokers' mTLS listener).
set -eu
dir=${1:?usage: $0 DIR}
umask 077  # the folder: nobody else on the host may look in
mkdir -p "$dir"
cd "$dir"

random() { [ -e "$1" ] || openssl rand -hex 32 | tr -d '\n' >"$1"; }
for principal in settlement clearing ledger fraud dashboard gateway topics; do random "kafka-$principal-password"; done
for service in settlement clearing gateway; do random "redis-$service-password"; done
for role in superuser owner ledger reader; do random "postgres-$role-password"; done
random dashboard-token
random pseudonym-key
random input-compose.key
random input-gateway.key
random gateway-caller-demo.key
# One caller of the gateway, acting for a sample institution: add your institutions' keys here.
[ -e gateway-callers.toml ] || printf '[callers.demo]\nsecret_file = "gateway-caller-demo.key"\nfixmedins_codes = ["H15250100001"]\n' >gateway-callers.toml
[ -e input-keys.toml ] || printf '[keys.compose]\nalgorithm = "hmac-sha256"\nsecret_file = "input-compose.key"\n\n[keys.gateway]\nsecret_file = "input-gateway.key"\n' >input-keys.toml
# The gateway's own keys file: its key only (it signs with it; settlement's file above verifies it).
[ -e gateway-input-keys.toml ] || printf '[keys.gateway]\nsecret_file = "input-gateway.key"\n' >gateway-input-keys.toml

[ -e ca.pem ] || openssl req -x509 -new -newkey rsa:3072 -nodes -keyout ca.key -out ca.pem -days 825 \
  -subj "/CN=Gongji compose CA" -addext "basicConstraints=critical,CA:true" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
# certificate NAME SUBJECT_ALT_NAMES USAGE: NAME.key and NAME.crt signed by the CA; NAME.pem = both
# (the PEM key store Kafka reads: an unencrypted PKCS#8 key, then the certificate).
certificate() {
  [ -e "$1.pem" ] && return 0
  openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:false\n' "$2" "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.crt" -days 825 \
    -extfile "$1.ext" 2>/dev/null
  cat "$1.key" "$1.crt" >"$1.pem"
  rm "$1.csr" "$1.ext"
}
for n in 1 2 3; do certificate "kafka-$n" "DNS:kafka-$n,DNS:localhost" serverAuth,clientAuth; done
certificate redis DNS:redis serverAuth
certificate postgres DNS:postgres serverAuth
certificate gongji-admin DNS:gongji-admin clientAuth
# Compose mounts each file as it is on the host (owner and mode), and the containers run as users of
# their own (10001, kafka's, redis's, postgres's): the files are readable inside, the folder (0700)
# keeps them from the host's other users. The servers copy their keys to files of their own, 0600.
chmod 0444 ./*
chmod 0400 ca.key
echo "secrets in $(pwd): export GONGJI_SECRETS_DIR=$(pwd)"
