"""Where `gongji stack up` keeps its state, and the settings a command runs on: the configured
servers, else the running stack's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gongji.settings import Settings

STATE_FILE = "stack.json"  # gongji.local.stack.STATE_FILE (a test holds them equal; stack may not import this module)


def find_state_dir(start: Path | None = None, given: str | None = None) -> tuple[Path, list[Path]]:
    """The local stack's folder, and the folders looked at for it: `given` (GONGJI_STATE_DIR) when
    set; else the nearest `.gongji` holding a running stack's state, from `start` (the working
    directory) up to the top of the checkout (the folder of Gongji's pyproject.toml), or to / outside
    one; else `.gongji` at the top of the checkout, else in `start`. So every directory of a
    checkout finds the stack `gongji stack up` started from any other."""
    if given:
        return Path(given), [Path(given)]
    start = (start or Path.cwd()).absolute()
    looked: list[Path] = []
    for folder in (start, *start.parents):
        looked.append(folder / ".gongji")
        if (folder / ".gongji" / STATE_FILE).is_file():
            return folder / ".gongji", looked
        if _checkout_top(folder):
            return folder / ".gongji", looked
    return start / ".gongji", looked


def _checkout_top(folder: Path) -> bool:
    try:
        return 'name = "gongji"' in (folder / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False


STATE_DIR, LOOKED = find_state_dir(given=os.environ.get("GONGJI_STATE_DIR"))


def resolve_settings(settings: Settings | None = None, service: str | None = None,
                     database_only: bool = False) -> Settings:
    """Settings from the environment when it names any server; else every server from a running
    `gongji stack up`, as `service` there when one is named (its client certificate and its store
    credentials), else as the stack's operator. Never a mix: production Kafka with the local stack's
    scratch database (or the reverse) would book real results where nobody audits them.
    `database_only`: a command that reads the ledger alone (`gongji ledger …`, `gongji reconcile`),
    for which GONGJI_DATABASE_URL is enough."""
    settings = settings or Settings()
    if settings.kafka_bootstrap_servers or settings.redis_url or settings.database_url:
        if database_only and settings.database_url:
            return settings
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
    on_stack = settings.updated(**stack_settings(state, principal(service) if service else TOOLS))
    return for_role(on_stack, state.get("credentials"), service) if service else on_stack


def read_state() -> dict:
    """The running `gongji stack up`'s state file; exit with one line when there is none."""
    state_file = STATE_DIR / STATE_FILE
    if not state_file.exists():
        looked = LOOKED if STATE_DIR in LOOKED else [STATE_DIR]
        sys.exit(f"gongji: no servers configured and no local stack running (looked for {STATE_FILE} in "
                 f"{', '.join(map(str, looked))}). Set GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL, "
                 "or start the local stack with `gongji stack up` (GONGJI_STATE_DIR: its folder, if elsewhere).")
    return json.loads(state_file.read_text())
