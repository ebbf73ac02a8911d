#!/bin/bash
# docker-compose.yml's kafka-setup job: on the brokers' mTLS listener, as the super user whose
# client certificate it holds (CN gongji-admin), gives each Gongji principal its SCRAM-SHA-512
# credential (the password from its secret file) and then its ACLs (deploy/kafka-acls.sh). Safe to
# run again: the credentials are set to the files' passwords, existing ACLs are left as they are.
set -euo pipefail
secrets=${SECRETS:-/run/secrets}
config=$(mktemp)
cat >"$config" <<PROPERTIES
security.protocol=SSL
ssl.keystore.type=PEM
ssl.keystore.location=$secrets/gongji-admin.pem
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.pem
PROPERTIES
for principal in settlement clearing ledger fraud dashboard gateway topics; do
  file="$secrets/kafka-$principal-password"
  [ -s "$file" ] || { echo "kafka-setup: $file is missing or empty" >&2; exit 1; }
  # The password is on this one-shot container's command line for the moment the tool runs:
  # kafka-configs.sh takes it no other way.
  /opt/kafka/bin/kafka-configs.sh --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$config" --alter \
    --entity-type users --entity-name "gongji-$principal" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "$file")]" >/dev/null
  echo "kafka-setup: SCRAM-SHA-512 credential of gongji-$principal"
done
KAFKA_CONFIG=$config KAFKA_ACLS=/opt/kafka/bin/kafka-acls.sh sh /etc/gongji/kafka-acls.sh
echo "kafka-setup: ACLs of deploy/kafka-acls.sh added"
