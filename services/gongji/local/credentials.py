"""The local stack's credentials: passwords made up when it starts, kept in files of mode 0600 in
its folder, and the settings each process gets from them.

Nothing here holds a password in memory longer than it takes to write or read its file: what the
stack records (its state file, `Endpoints`) and what a process is given (`for_role`) are paths,
read by `Settings` when a client is built (GONGJI_REDIS_PASSWORD_FILE, GONGJI_DATABASE_PASSWORD_FILE).

Roles: `operator` (the Redis admin and the ledger's owner, for `gongji ledger migrate`, the demo's
summaries, the tests' helpers) and one per service, each with only what it uses: settlement and
clearing their own Redis user, the ledger its writer role, the dashboard the ledger's read-only
role (its period view), fraud none.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from gongji.local.store_users import (ADMIN, LEDGER_OWNER, LEDGER_READER, LEDGER_WRITER, REDIS_RULES, redis_acl,
                                      redis_user)

OPERATOR = "operator"

#: Every credential setting: a role's settings name all of them, so none of the caller's leaks through.
FIELDS = ("redis_username", "redis_password", "redis_password_file", "database_url", "database_password",
          "database_password_file", "ledger_migration_url", "ledger_migration_password_file", "ledger_writer_role")

#: What a service that reads no input is given of the stack's input keys: nothing.
UNSIGNED = {"input_keys_file": None, "input_signing_key": None, "require_signed_input": False}
#: What a service other than the dashboard is given of its secrets: nothing.
NO_DASHBOARD = {"dashboard_token": None, "dashboard_token_file": None, "pseudonym_key": None,
                "pseudonym_key_file": None}
#: What a service other than the gateway is given of its callers file: nothing.
NO_GATEWAY = {"gateway_callers_file": None}
#: What every service is given of the stack's gateway caller (`gongji call`'s, the tools'): nothing.
NO_CALLER = {"gateway_url": None, "gateway_caller": None, "gateway_caller_secret_file": None}


def secret_names() -> list[str]:
    """One file per password: Redis's admin and service users, PostgreSQL's superuser and the
    ledger's three roles."""
    return ["redis-admin", *(f"redis-{service}" for service in REDIS_RULES), "postgres", LEDGER_OWNER, LEDGER_WRITER,
            LEDGER_READER]


def write_secrets(folder: Path) -> dict[str, Path]:
    """Fresh passwords (secrets module) in `folder` (mode 0700), one file each (mode 0600)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    files = {}
    for name in secret_names():
        files[name] = write_private(folder / name, secrets.token_urlsafe(24))
    return files


def write_private(path: Path, content: str | bytes) -> Path:
    """`path` made afresh with `content`, readable by its owner only (0600) from the moment it
    exists: an earlier file is removed first, never followed or reused with its old mode."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_secret(path: Path | str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def write_acl(path: Path, files: dict[str, Path], key_prefix: str | None) -> Path:
    """Valkey's ACL file (mode 0600) for the stack: `default` off, the admin, one user per service.
    `key_prefix` None: the services' key patterns take any prefix (see `store_users.redis_acl`)."""
    text = redis_acl({service: read_secret(files[f"redis-{service}"]) for service in REDIS_RULES}, key_prefix,
                     read_secret(files["redis-admin"]))
    return write_private(path, text)


def credentials(files: dict[str, Path], postgres_port: int | None) -> dict[str, dict[str, Any]]:
    """Per role, the credential settings (every one of FIELDS; paths as text, for the state file)."""
    from gongji.services import SERVICES

    def database(role: str) -> str | None:
        return f"postgresql://{role}@127.0.0.1:{postgres_port}/gongji" if postgres_port else None

    def role(redis_name: str | None = None, database_role: str | None = None, **more: Any) -> dict[str, Any]:
        fields = dict.fromkeys(FIELDS)
        if redis_name:
            fields.update(redis_username=redis_user(redis_name) if redis_name != "admin" else ADMIN,
                          redis_password_file=str(files[f"redis-{redis_name}"]))
        if database_role and postgres_port:
            fields.update(database_url=database(database_role), database_password_file=str(files[database_role]))
        return {**fields, **more}

    table = {OPERATOR: role("admin", LEDGER_OWNER, ledger_writer_role=LEDGER_WRITER if postgres_port else None)}
    for service in SERVICES:
        # The input keys (gongji.local.input_keys) are settlement's, which verifies with them, and
        # the operator's and the gateway's, who sign (the gateway the claims of its callers): no
        # other service is given them.
        signing = {} if service in ("settlement", "gateway") else UNSIGNED
        # Likewise the dashboard's token and pseudonym key (gongji.local.dashboard_login), the gateway's callers.
        screen = {} if service == "dashboard" else NO_DASHBOARD
        callers = {} if service == "gateway" else NO_GATEWAY
        ledger = {"ledger": LEDGER_WRITER, "dashboard": LEDGER_READER}.get(service)
        table[service] = role(service if service in REDIS_RULES else None, ledger, **signing, **screen, **callers,
                              **NO_CALLER)
    return table


def for_role(settings, table: dict[str, dict[str, Any]] | None, role: str):
    """`settings` with `role`'s credentials and no other's (unchanged when `table` is None: servers
    configured by the environment bring their own)."""
    if not table:
        return settings
    fields = table[role]
    paths = {name: Path(value) if name.endswith("_file") and value else value for name, value in fields.items()}
    return settings.model_copy(update=paths)
