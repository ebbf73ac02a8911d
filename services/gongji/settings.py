"""Typed settings for every Gongji process, read from the environment (prefix GONGJI_).

Built once in the composition root (the CLI) and passed down; nothing connects at import time.
Unset server addresses mean "use the local stack" (see gongji.local.stack).
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gongji.common.money import to_fen, to_yuan
from gongji.contract.topics import Topics
from gongji.fraud_settings import FraudSettings
from gongji.contract.wire import DEFAULT_BOUNDS, WIRE_MAX_FEN, Bounds


#: The dashboard's optional secrets and files: an empty variable is unset.
DASHBOARD_SECRETS = ("dashboard_token", "dashboard_token_file", "dashboard_user", "dashboard_password_hash",
                     "dashboard_password_hash_file", "dashboard_tls_certfile", "dashboard_tls_keyfile",
                     "pseudonym_key", "pseudonym_key_file", "metrics_token", "metrics_token_file")


class LogSettings(BaseSettings):
    """How every gongji process logs on stderr (gongji.common.observe.configure_logging); read on
    its own, before the rest, so that a setting the rest refuses is logged in the chosen format."""

    model_config = SettingsConfigDict(env_prefix="GONGJI_", extra="ignore")

    # text: a line a person reads; json: one object per line for a log shipper. Unset: text when
    # stderr is a terminal, json otherwise (a service under an orchestrator, the stack's log files).
    log_format: Literal["text", "json"] | None = None
    # DEBUG, INFO, WARNING, ERROR. At INFO the libraries' own chatter (yoyo's migration steps,
    # aiokafka's reconnection errors) is held back to warnings; DEBUG lets it all through.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value):
        return (value.lower() if value and value.lower() in ("text", "json") else value.upper()) if value else None


class Settings(LogSettings):
    model_config = SettingsConfigDict(env_prefix="GONGJI_", env_nested_delimiter="__")

    kafka_bootstrap_servers: str | None = None
    # How every Kafka client (gongji.common.kafka.client_options)
    # authenticates and encrypts. SASL_*: a username and a password, or a file holding it (a mounted
    # secret, read when a client is built, so a rotated one is taken up on restart). SSL: the
    # broker's certificate checked against the CA file (the system's CAs when unset), hostname
    # included; a client certificate and key for mTLS.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # The local stack (gongji stack up, demo, bench): Tansu only behind a TLS terminator that wants
    # a client certificate of the stack's own CA (gongji.local.tls); false: Tansu's plaintext port.
    local_kafka_tls: bool = True
    # The local stack's Redis: its append-only file fsynced on every event-loop turn that wrote
    # ("always": a WAITAOF returns at once), or every second ("everysec", as docker-compose.yml runs
    # it: a WAITAOF waits for the next flush, ~100 ms at hz 10; README "Speed").
    local_redis_appendfsync: Literal["everysec", "always"] = "always"
    # The local stack's services that follow settlement's results and answer no one waiting (ledger,
    # clearing, fraud, dashboard) and its PostgreSQL run this much nicer than the process that starts
    # them (0: the same; 19: only on CPU the rest leaves), so that on a few shared cores they yield to
    # the path a claim's answer takes; they catch up when it is idle (README "Speed").
    local_downstream_nice: int = Field(default=10, ge=0, le=19)
    redis_url: str | None = None
    # The URL names one node of a Redis Cluster; the client finds the rest (keys carry {psn_no} tags).
    redis_cluster: bool = False
    # What "durable" means before a batch's results are published and its offsets committed
    # (gongji.common.redis.Durability): aof (the primary's append-only file is on disk), aof-replicas
    # (that many replicas' files are), aof-all (both), replicas (that many replicas hold it in memory:
    # for AOF off), none.
    redis_durability: Literal["aof", "aof-replicas", "aof-all", "replicas", "none"] = "aof"
    redis_durability_replicas: int = 1
    redis_durability_timeout_ms: int = 5000
    database_url: str | None = None
    # Credentials for the stores, beside (or instead of) a user:password in the URL; a `_file` names
    # a mounted secret, read at start-up (trailing newline dropped). Secrets never appear in a repr.
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = None
    database_password: SecretStr | None = None
    database_password_file: Path | None = None
    # `gongji ledger migrate` connects with this URL (the owner role) when set, else database_url,
    # and grants ledger_writer_role (the service's role: INSERT and SELECT only) what it needs.
    ledger_migration_url: str | None = None
    ledger_migration_password_file: Path | None = None
    ledger_writer_role: str | None = None
    # Signed input (gongji.common.signing, README "Signed input"): the keys file (TOML: per key id its
    # algorithm, secret file and regions); settlement verifies every signed input record against it
    # and, with require_signed_input, dead-letters unsigned ones too. Gongji's own producers (demo,
    # bench) sign with the key input_signing_key names in the file.
    input_keys_file: Path | None = None
    require_signed_input: bool = False
    input_signing_key: str | None = None
    topics: Topics = Topics()
    # Prepended to every topic name, so several deployments (or tests) can share one cluster.
    topic_prefix: str = ""
    # Every Redis key starts with this, so several deployments (or tests) can share one server.
    key_prefix: str = "gj"
    settlement_group: str = "gongji-settlement"
    clearing_group: str = "gongji-clearing"
    # Clearing forgets the ids it counted for a year's months once a result dated this many years
    # later is counted (gongji.clearing.store); at least the longest reversal window, plus slack.
    clearing_window_years: int = Field(default=2, ge=1)
    ledger_group: str = "gongji-ledger"
    # The PostgreSQL schema holding the ledger's journal (several deployments or tests share a server).
    ledger_schema: str = "ledger"
    # Fraud signals (gongji.fraud): its consumer group, which after the topic prefix also prefixes its
    # own topics (activity, changelog), and the rules' thresholds (GONGJI_FRAUD__...).
    fraud_group: str = "gongji-fraud"
    fraud: FraudSettings = FraudSettings()
    # Partitions for topics this project creates; the same key always lands on one partition.
    partitions: int = 6
    replication_factor: int = 1
    # Retention of the event topics `gongji topics create` makes (claims, accounts.credits,
    # settlements, fraud.signals): long enough for a consumer to be down over a long holiday and
    # catch up. The ledger, not Kafka, is the record of what was paid.
    topic_retention_ms: int = 14 * 24 * 3600 * 1000
    # Retention of dead-letters (to be fixed and sent again) and clearing.statements (one a month
    # per pair of regions): a quarter and more.
    topic_long_retention_ms: int = 100 * 24 * 3600 * 1000
    # min.insync.replicas set on each topic; 0 leaves the broker's default (set 2 with replication 3).
    topic_min_insync_replicas: int = 0
    # Consumer-group timeouts: the shortest a stock Kafka accepts. The local Tansu stack uses
    # shorter ones (gongji.local.stack.TANSU_GROUP_TIMEOUTS).
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    kafka_rebalance_timeout_ms: int = 6000
    # Prometheus metrics (/metrics) and health (/healthz) of a service; 0: no endpoint.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # Largest batch one poll hands to settlement; one batch costs four Redis round trips.
    batch_max_records: int = 2000
    # Latency (README "Speed"): how long a consumer's fetch may wait at the broker for data (Tansu
    # holds a fetch up to this long even when data is there), and how long a producer's `send` waits
    # to fill a batch (kafka.publish sends its batches whole, at once).
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=0)
    kafka_linger_ms: int = Field(default=5, ge=0)
    # The groups downstream of `settlements` (ledger, clearing, fraud): a fetch returns once it holds
    # this many bytes or has waited this long (Tansu honours both), so they take results in larger
    # batches, at less CPU a result, for up to that wait more before a result is booked or counted.
    # 1 byte: as soon as there is data, like every other consumer.
    kafka_downstream_fetch_min_bytes: int = Field(default=1, ge=1)
    kafka_downstream_fetch_max_wait_ms: int = Field(default=20, ge=0)
    # Bounds at the edge of settlement (docs/BOUNDS.md): plausibility ceilings in yuan,
    # **sample** values, and how far past the present a setl_time may be (clocks differ a little).
    max_line_amount: Decimal = to_yuan(DEFAULT_BOUNDS.max_line_amount)
    max_claim_amount: Decimal = to_yuan(DEFAULT_BOUNDS.max_claim_amount)
    max_opening_amount: Decimal = to_yuan(DEFAULT_BOUNDS.max_opening_amount)
    max_credit_base: Decimal = to_yuan(DEFAULT_BOUNDS.max_credit_base)
    setl_time_tolerance_seconds: float = DEFAULT_BOUNDS.setl_time_tolerance.total_seconds()
    # When handling a batch fails (gongji.common.poison): an outage is retried after an exponential
    # backoff from retry_initial_seconds up to retry_max_seconds; a timeout or lost connection while
    # every server answers the probe is retried retry_transient_attempts times before the batch is
    # split to find the message; the probe of each server waits probe_timeout_seconds.
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    retry_transient_attempts: int = 3
    probe_timeout_seconds: float = 5.0
    # /healthz answers 503 once a service has not polled, or has failed every batch, or has had input
    # waiting without handling any, for this long.
    stall_seconds: float = 30.0
    # A service asked to stop (SIGTERM) finishes its batch in flight; whatever it is still doing this
    # long after is cancelled (gongji.common.process), inside an orchestrator's kill deadline.
    stop_grace_seconds: float = 20.0
    # `gongji ledger check`: seconds between its two readings of the ledger group's progress.
    ledger_check_seconds: float = 2.0

    # The dashboard (gongji run dashboard): its page, /events, /healthz and /metrics on loopback.
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8350
    # On start it reads back only what was published in the last this many seconds (by record
    # timestamp), at most this many records per partition, then everything new; the institution
    # registry is read whole.
    dashboard_lookback_seconds: float = 900.0
    dashboard_lookback_records: int = 100_000
    # Who may see it (gongji.dashboard.access): a bearer token, or a user and the argon2 hash of its
    # password; `off` only behind a reverse proxy that authenticates (the dashboard refuses to start
    # with neither). TLS when both files are set. Subject ids on screens are keyed pseudonyms under
    # pseudonym_key (gongji.common.pseudonym). /metrics and /healthz off loopback need metrics_token.
    dashboard_auth: Literal["on", "off"] = "on"
    dashboard_token: SecretStr | None = None
    dashboard_token_file: Path | None = None
    dashboard_user: str | None = None
    dashboard_password_hash: SecretStr | None = None
    dashboard_password_hash_file: Path | None = None
    dashboard_tls_certfile: Path | None = None
    dashboard_tls_keyfile: Path | None = None
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None
    metrics_token: SecretStr | None = None
    metrics_token_file: Path | None = None

    # The gateway (gongji run gateway, gongji.gateway): the national envelope at POST / on loopback.
    # Callers: a TOML file of key ids, secret files and the institutions each acts for. A 2207
    # request waits this long for its result, then answers "pending"; an answer is kept (per
    # institution and msgid) this long; a request's timestamp may be this far from the clock.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8351
    gateway_callers_file: Path | None = None
    gateway_wait_seconds: float = Field(3.0, gt=0)
    gateway_answer_ttl_seconds: int = Field(7 * 86400, ge=60)
    gateway_clock_skew_seconds: float = Field(300.0, gt=0)
    # `gongji call` (gongji.gateway.client): the gateway it sends to and the caller it signs as.
    gateway_url: str | None = None
    gateway_caller: str | None = None
    gateway_caller_secret_file: Path | None = None

    @field_validator("kafka_bootstrap_servers", "redis_url", "database_url", "kafka_sasl_username",
                     "kafka_sasl_password", "kafka_sasl_password_file", "kafka_ssl_cafile", "kafka_ssl_certfile",
                     "kafka_ssl_keyfile", "redis_username", "redis_password", "redis_password_file",
                     "database_password", "database_password_file", "ledger_migration_url",
                     "ledger_migration_password_file", "ledger_writer_role", "input_keys_file",
                     "input_signing_key", "gateway_callers_file", "gateway_url", "gateway_caller",
                     "gateway_caller_secret_file", *DASHBOARD_SECRETS, mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return value or None  # GONGJI_DATABASE_URL= names no database (to_env writes None so)

    @field_validator("max_line_amount", "max_claim_amount", "max_opening_amount", "max_credit_base")
    @classmethod
    def _a_ceiling_the_wire_holds(cls, value: Decimal) -> Decimal:
        if not 0 < to_fen(value) <= WIRE_MAX_FEN:
            raise ValueError(f"{value} is not between 0.01 and 99999999999999.99 yuan (decimal(16,2) on the wire)")
        return value

    @field_validator("setl_time_tolerance_seconds")
    @classmethod
    def _a_tolerance(cls, value: float) -> float:
        if not 0 <= value <= 7 * 86400:
            raise ValueError(f"{value} is not between 0 and a week")
        return value

    def redis_credentials(self) -> dict[str, str | None]:
        """username and password for redis-py (None: whatever the URL says)."""
        return {"username": self.redis_username,
                "password": _secret(self.redis_password, self.redis_password_file, "GONGJI_REDIS_PASSWORD_FILE")}

    def database_password_value(self) -> str | None:
        return _secret(self.database_password, self.database_password_file, "GONGJI_DATABASE_PASSWORD_FILE")

    def migration_password_value(self) -> str | None:
        return _secret(None, self.ledger_migration_password_file, "GONGJI_LEDGER_MIGRATION_PASSWORD_FILE")

    def check_secret_files(self) -> None:
        """Read every configured password file once: a missing or unreadable one raises ValueError
        naming its variable (the CLI prints that one line) instead of failing in a client later."""
        self.redis_credentials()
        self.database_password_value()
        self.migration_password_value()
        _secret(None, self.kafka_sasl_password_file, "GONGJI_KAFKA_SASL_PASSWORD_FILE")
        self.dashboard_token_value()
        self.dashboard_password_hash_value()
        self.pseudonym_key_value()
        self.metrics_token_value()

    def dashboard_token_value(self) -> str | None:
        return _secret(self.dashboard_token, self.dashboard_token_file, "GONGJI_DASHBOARD_TOKEN_FILE")

    def dashboard_password_hash_value(self) -> str | None:
        return _secret(self.dashboard_password_hash, self.dashboard_password_hash_file,
                       "GONGJI_DASHBOARD_PASSWORD_HASH_FILE")

    def pseudonym_key_value(self) -> bytes | None:
        key = _secret(self.pseudonym_key, self.pseudonym_key_file, "GONGJI_PSEUDONYM_KEY_FILE")
        return key.encode("utf-8") if key else None

    def metrics_token_value(self) -> str | None:
        return _secret(self.metrics_token, self.metrics_token_file, "GONGJI_METRICS_TOKEN_FILE")

    @model_validator(mode="after")
    def _dashboard_pairs(self) -> "Settings":
        if bool(self.dashboard_user) != bool(self.dashboard_password_hash or self.dashboard_password_hash_file):
            raise ValueError("dashboard_user and dashboard_password_hash (or its file) go together")
        if bool(self.dashboard_tls_certfile) != bool(self.dashboard_tls_keyfile):
            raise ValueError("dashboard_tls_certfile and dashboard_tls_keyfile go together")
        return self

    def settlement_bounds(self) -> Bounds:
        return Bounds(max_line_amount=to_fen(self.max_line_amount), max_claim_amount=to_fen(self.max_claim_amount),
                      max_opening_amount=to_fen(self.max_opening_amount),
                      max_credit_base=to_fen(self.max_credit_base),
                      setl_time_tolerance=timedelta(seconds=self.setl_time_tolerance_seconds))

    @model_validator(mode="after")
    def _min_insync_within_replication(self) -> "Settings":
        if self.topic_min_insync_replicas > self.replication_factor:
            # A topic with fewer replicas than its minimum in sync refuses every acks=all write.
            raise ValueError(f"topic_min_insync_replicas ({self.topic_min_insync_replicas}) is above "
                             f"replication_factor ({self.replication_factor})")
        return self

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> "Settings":
        """Credentials the protocol would not use are a mistake (someone believes they are in force)."""
        sasl, tls = self.kafka_security_protocol.startswith("SASL_"), self.kafka_security_protocol.endswith("SSL")
        secrets = (self.kafka_sasl_password is not None) + (self.kafka_sasl_password_file is not None)
        if sasl and (not self.kafka_sasl_username or secrets != 1):
            raise ValueError(f"kafka_security_protocol {self.kafka_security_protocol} needs kafka_sasl_username "
                             "and one of kafka_sasl_password, kafka_sasl_password_file")
        if not sasl and (self.kafka_sasl_username or secrets):
            raise ValueError(f"SASL credentials are set but kafka_security_protocol is {self.kafka_security_protocol}")
        files = [self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile]
        if not tls and any(files):
            raise ValueError(f"SSL files are set but kafka_security_protocol is {self.kafka_security_protocol}")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("kafka_ssl_keyfile without kafka_ssl_certfile")
        return self

    def kafka_sasl_secret(self) -> str:
        """The SASL password: given, or read from its file now (a trailing newline dropped)."""
        secret = _secret(self.kafka_sasl_password, self.kafka_sasl_password_file, "GONGJI_KAFKA_SASL_PASSWORD_FILE")
        if secret is None:
            raise ValueError("no SASL password configured")
        return secret

    @model_validator(mode="after")
    def _signing_has_keys(self) -> "Settings":
        if (self.require_signed_input or self.input_signing_key) and self.input_keys_file is None:
            raise ValueError("require_signed_input and input_signing_key need input_keys_file (GONGJI_INPUT_KEYS_FILE)")
        return self

    @model_validator(mode="after")
    def _prefix_topics(self) -> "Settings":
        if self.topic_prefix and not self.topics.claims.startswith(self.topic_prefix):
            self.topics = self.topics.prefixed(self.topic_prefix)
        return self

    def updated(self, **changes: Any) -> "Settings":
        """A copy with `changes`, validated as configured values are (`model_copy(update=…)` is not:
        a path given as text would stay text) and without reading the environment again."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables that give them back: `Settings()` in a
        process with them equals `self`. Every field, defaults included, nested models with the
        `__` delimiter (GONGJI_FRAUD__VISITS_PER_DAY), None as the empty string, lists and dicts as
        JSON: a child started with `{**os.environ, **settings.to_env()}` runs on these settings
        whatever the caller's shell says, and a setting added to the model reaches it unasked.

        Secrets in the settings (a password in GONGJI_DATABASE_URL or GONGJI_REDIS_URL, and any
        credential added later) reach the child this way too: through its environment, which only
        its user (and root) can read in /proc/PID/environ; never put them on a command line."""
        return _as_env(self, self.model_config["env_prefix"])

    def kafka_group(self, service: str) -> str:
        """The consumer group `service` joins on Kafka: its `<service>_group` setting, except that
        the fraud service's group carries the topic prefix as well (it names its own topics)."""
        group = getattr(self, f"{service}_group")
        return f"{self.topic_prefix}{group}" if service == "fraud" else group

    def fetch_options(self, group: str | None) -> dict[str, int]:
        """How a consumer in `group` fetches: fraud's own settings in its group, the downstream
        settings in ledger's or clearing's, else at once with kafka_fetch_max_wait_ms."""
        if group == self.kafka_group("fraud"):
            return {"fetch_min_bytes": self.fraud.fetch_min_bytes, "fetch_max_wait_ms": self.fraud.fetch_max_wait_ms}
        if group in {self.kafka_group(service) for service in ("ledger", "clearing")}:
            return {"fetch_min_bytes": self.kafka_downstream_fetch_min_bytes,
                    "fetch_max_wait_ms": self.kafka_downstream_fetch_max_wait_ms}
        return {"fetch_min_bytes": 1, "fetch_max_wait_ms": self.kafka_fetch_max_wait_ms}

    def group_timeouts(self) -> dict[str, int]:
        return {
            "session_timeout_ms": self.kafka_session_timeout_ms,
            "heartbeat_interval_ms": self.kafka_heartbeat_interval_ms,
            "rebalance_timeout_ms": self.kafka_rebalance_timeout_ms,
        }


def _secret(value: SecretStr | None, path: Path | None, variable: str) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise ValueError(f"{variable}: cannot read {path}: {error.strerror}") from None


def _as_env(model: BaseModel, prefix: str) -> dict[str, str]:
    env, values = {}, model.model_dump(mode="json")  # Decimal as its text, tuples as lists
    for name in type(model).model_fields:
        key, value = f"{prefix}{name}".upper(), getattr(model, name)
        if isinstance(value, SecretStr):  # model_dump masks it; the child needs the secret itself
            env[key] = value.get_secret_value()
        elif isinstance(value, BaseModel):
            env.update(_as_env(value, f"{key}__"))
        elif values[name] is None or isinstance(values[name], str):
            env[key] = values[name] or ""
        else:
            env[key] = json.dumps(values[name])
    return env
