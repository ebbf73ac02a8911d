"""Where `gongji stack up` keeps its state, and the settings a command runs on: the configured
servers, else the running stack's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gongji.settings import Settings

STATE_DIR = Path(os.environ.get("GONGJI_STATE_DIR", ".gongji"))


def resolve_settings(settings: Settings | None = None, service: str | None = None) -> Settings:
    """Settings from the environment when it names any server; else every server from a running
    `gongji stack up`, as `service` there when one is named (its client certificate and its store
    credentials), else as the stack's operator. Never a mix: production Kafka with the local stack's
    scratch database (or the reverse) would book real results where nobody audits them."""
    settings = settings or Settings()
    if settings.kafka_bootstrap_servers or settings.redis_url or settings.database_url:
        if not (settings.kafka_bootstrap_servers and settings.redis_url):
            sys.exit("gongji: set both GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL (and GONGJI_DATABASE_URL "
                     "for the ledger), or none of them to use the local stack.")
        return settings  # without a database only the ledger cannot run, and says so
    return local_stack_settings(settings, service)


def local_stack_settings(settings: Settings, service: str | None = None) -> Settings:
    """`settings` on the servers of the running `gongji stack up`, all of them: as `service` (Kafka
    with its certificate, gongji.local.tls; its own Redis and PostgreSQL credentials,
    gongji.local.credentials), else as the operator (the tools' certificate, the admin's)."""
    from gongji.local.credentials import for_role
    from gongji.local.stack import stack_settings
    from gongji.local.tls import TOOLS, principal

    state = read_state()
    on_stack = settings.model_copy(update=stack_settings(state, principal(service) if service else TOOLS))
    return for_role(on_stack, state.get("credentials"), service) if service else on_stack


def read_state() -> dict:
    """The running `gongji stack up`'s state file; exit with one line when there is none."""
    from gongji.local.stack import STATE_FILE

    state_file = STATE_DIR / STATE_FILE
    if not state_file.exists():
        sys.exit("gongji: no servers configured. Set GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL, "
                 "or start the local stack with `gongji stack up`.")
    return json.loads(state_file.read_text())
