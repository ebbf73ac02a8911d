#!/bin/sh
# The Apache Kafka ACLs of Gongji's principals: each may do what its row of the least-privilege
# table in README.md says and nothing else (a cluster with an authorizer, e.g. KRaft's
# StandardAuthorizer, and allow.everyone.if.no.acl.found=false). Run as a super user:
#   KAFKA_BOOTSTRAP=kafka-1:9092 KAFKA_CONFIG=admin.properties deploy/kafka-acls.sh
# TOPIC_PREFIX: GONGJI_TOPIC_PREFIX, if set (it prefixes the fraud service's group and internal
# topics too); KAFKA_ACLS: the kafka-acls.sh to run (default: the one on PATH). Adding an ACL that
# exists is harmless, so it can run again after an upgrade. tests/unit/test_least_privilege.py holds
# these lines to contract/topics.py's SERVICE_TOPICS and the README's table.
set -eu
P=${TOPIC_PREFIX:-}
: "${KAFKA_BOOTSTRAP:?the brokers, host:port[,host:port]}"
: "${KAFKA_CONFIG:?a client properties file authenticating a super user}"

# acl PRINCIPAL OPERATION topic|group|cluster NAME [prefixed]
acl() {
  case $3 in
    cluster) resource=--cluster ;;
    *) resource="--$3 $4" ;;
  esac
  # shellcheck disable=SC2086 # resource is two words
  "${KAFKA_ACLS:-kafka-acls.sh}" --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$KAFKA_CONFIG" --add \
    --allow-principal "User:$1" --operation "$2" $resource --resource-pattern-type "${5:-literal}" >/dev/null
}

# Settlement: reads its inputs and the schemas, writes results, dead letters and its schemas; reads
# settlements too (`gongji settlement rebuild` compares the state it rebuilds with them); answers the
# gateway's inquiries (2206, 5206) on inquiry-results, which only the gateway reads.
acl gongji-settlement Read topic "${P}claims"
acl gongji-settlement Read topic "${P}accounts.credits"
acl gongji-settlement Read topic "${P}registry.persons"
acl gongji-settlement Read topic "${P}registry.institutions"
acl gongji-settlement Read topic "${P}registry.catalogue"
acl gongji-settlement Read topic "${P}schemas"
acl gongji-settlement Read topic "${P}settlements"
acl gongji-settlement Read topic "${P}inquiries"
acl gongji-settlement Write topic "${P}settlements"
acl gongji-settlement Write topic "${P}inquiry-results"
acl gongji-settlement Write topic "${P}schemas"
acl gongji-settlement Write topic "${P}dead-letters"
acl gongji-settlement Read group gongji-settlement

# Ledger: reads settlements into the journal.
acl gongji-ledger Read topic "${P}settlements"
acl gongji-ledger Write topic "${P}dead-letters"
acl gongji-ledger Read group gongji-ledger

# Clearing: reads settlements, writes the monthly statements.
acl gongji-clearing Read topic "${P}settlements"
acl gongji-clearing Write topic "${P}clearing.statements"
acl gongji-clearing Write topic "${P}dead-letters"
acl gongji-clearing Read group gongji-clearing

# Fraud: reads settlements and claims, writes signals; it creates, reads and writes its own topics
# under its group's name (the activity topic, its changelog).
acl gongji-fraud Read topic "${P}settlements"
acl gongji-fraud Read topic "${P}claims"
acl gongji-fraud Write topic "${P}fraud.signals"
acl gongji-fraud Write topic "${P}dead-letters"
acl gongji-fraud Read group "${P}gongji-fraud"
for operation in Create Read Write Describe DescribeConfigs; do
  acl gongji-fraud "$operation" topic "${P}gongji-fraud-" prefixed
done

# Dashboard: reads the results without a group; reads the other groups' committed offsets and
# every topic's ends for the consumer lag (Describe only: it reads no input).
acl gongji-dashboard Read topic "${P}settlements"
acl gongji-dashboard Read topic "${P}registry.institutions"
acl gongji-dashboard Read topic "${P}fraud.signals"
acl gongji-dashboard Read topic "${P}clearing.statements"
acl gongji-dashboard Read topic "${P}dead-letters"
for topic in claims accounts.credits registry.persons registry.catalogue schemas inquiries inquiry-results; do
  acl gongji-dashboard Describe topic "${P}$topic"
done
for group in gongji-settlement gongji-ledger gongji-clearing "${P}gongji-fraud"; do
  acl gongji-dashboard Describe group "$group"
done

# Gateway: an input producer for the institutions calling it (signed claims and inquiries), reading
# their results on settlements and inquiry-results without a group (one reply consumer per process).
acl gongji-gateway Write topic "${P}claims"
acl gongji-gateway Write topic "${P}inquiries"
acl gongji-gateway Read topic "${P}settlements"
acl gongji-gateway Read topic "${P}inquiry-results"

# `gongji topics create` / `describe`: creates the topics and reads their configs; nothing else.
for topic in claims registry.persons registry.institutions registry.catalogue accounts.credits settlements \
    fraud.signals clearing.statements dead-letters schemas inquiries inquiry-results; do
  acl gongji-topics Create topic "${P}$topic"
  acl gongji-topics Describe topic "${P}$topic"
  acl gongji-topics DescribeConfigs topic "${P}$topic"
done

# The systems that send input (a hospital's or a province's gateway; one principal each in
# practice, this is the shape): they write the input topics and read nothing.
acl gongji-input Write topic "${P}claims"
acl gongji-input Write topic "${P}accounts.credits"
acl gongji-input Write topic "${P}registry.persons"
acl gongji-input Write topic "${P}registry.institutions"
acl gongji-input Write topic "${P}registry.catalogue"
