"""Who may do what in the stores, least privilege: one Redis ACL user per service that uses Redis
(its key patterns and commands, `default` off) and the ledger's PostgreSQL roles (an owner that
runs the migrations, a writer that may only insert into the journal and read it).

`redis_acl` writes the ACL file the local stack's valkey-server loads (`--aclfile`);
`deploy/redis/users.acl.example` is its output for the default prefix (a unit test holds them
equal). The ledger's roles are `deploy/postgres/roles.sql` (run with psql, as the tests do); the
writer's grants are `gongji/ledger/grants.sql`, applied by `gongji ledger migrate`.

Key patterns follow the stores' keys (settlement/redis_store.py, clearing/store.py). Settlement
and clearing share the key prefix, so settlement's patterns name its suffixes (`:state`, `:recs`, `:rec:*`,
`:holds`): clearing's `{clr:…}:flow|seen` match none of them. Redis checks the keys a Lua script
declares and the commands it calls, so the scripts' commands are listed too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

#: Connecting (redis-py sends CLIENT SETINFO), readiness and the probe; a Redis Cluster client
#: reads the slots and the command table.
_CLIENT = ("ping", "client|setinfo", "cluster|slots", "cluster|shards", "command")

#: Per service: commands (client and Lua) and key patterns, after the key prefix.
REDIS_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "settlement": (
        # reads and writes of settlement/redis_store.py; scan and unlink: the rebuild's wipe and the
        # upgrade from the first layout (`:{*}:rec:*`, `:id:*`)
        ("get", "set", "hget", "hmget", "hgetall", "hset", "hsetnx", "del", "unlink", "scan",
         # commit.lua, hold.lua, mark.lua, own.lua, disown.lua, templates.lua
         "evalsha", "script|load", "hexists", "hdel", "hincrby", "hkeys",
         # durability (common/redis.Durability): INFO persistence/replication, then the waits
         "info", "waitaof", "wait"),
        (":{*}:state", ":{*}:recs", ":{*}:rec:*", ":{*}:holds", ":inst:*", ":cat:*", ":ids:*", ":id:*", ":seen:*",
         ":layout", ":tpl", ":probe"),
    ),
    "clearing": (
        # clearing/store.py, apply.lua (sadd, hincrby), months (scan), positions (smembers, hgetall),
        # closing a year (get, the advance script's set, unlink)
        ("sadd", "smembers", "hgetall", "hincrby", "scan", "evalsha", "script|load", "set", "get", "unlink"),
        (":{clr:*}:flow", ":{clr:*}:seen", ":clr:pairs:*", ":clr:closed", ":probe"),
    ),
    "gateway": (
        # gateway/service.py: a msgid claimed with SET NX, its answer stored with SET, read with GET
        ("get", "set"),
        (":gw:*",),
    ),
}

#: The local stack's operator (readiness checks, tests, `gongji demo`'s summaries): every key and
#: command. A deployment's operator account is its own business.
ADMIN = "gongji-admin"


def redis_user(service: str) -> str:
    return f"gongji-{service}"


def glob_escape(text: str) -> str:
    """`text` matched literally by a Redis glob pattern (ACL key patterns, SCAN MATCH)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def acl_line(service: str, password_sha256: str, prefix: str | None = "gj") -> str:
    """`prefix` None: any key prefix (the local stack, where each test and demo run has its own)."""
    commands, keys = REDIS_RULES[service]
    start = "*" if prefix is None else glob_escape(prefix)
    patterns = " ".join(f"~{start}{key}" for key in keys)
    allowed = " ".join(f"+{command}" for command in _CLIENT + commands)
    return f"user {redis_user(service)} on #{password_sha256} resetchannels {patterns} -@all {allowed}"


def redis_acl(passwords: dict[str, str], prefix: str | None = "gj", admin_password: str | None = None) -> str:
    """The ACL file: `default` off, one user per service in `passwords` (and the admin with one)."""
    lines = ["user default off resetkeys resetchannels -@all"]
    lines += [acl_line(service, sha256(passwords[service]), prefix) for service in REDIS_RULES if service in passwords]
    if admin_password is not None:
        lines.append(f"user {ADMIN} on #{sha256(admin_password)} ~* &* +@all")
    return "\n".join(lines) + "\n"


def sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def example_acl() -> str:
    """deploy/redis/users.acl.example: the file for prefix `gj`, hashes to fill in."""
    lines = ["user default off resetkeys resetchannels -@all"]
    lines += [acl_line(service, f"<sha256 of {redis_user(service)}'s password>") for service in REDIS_RULES]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ PostgreSQL
LEDGER_OWNER = "gongji_ledger_owner"
LEDGER_WRITER = "gongji_ledger"
LEDGER_READER = "gongji_ledger_reader"  # the dashboard's period view: SELECT only


@dataclass
class StoreCredentials:
    """Passwords for a secured local stack, made up on the spot (never written outside its folder)."""

    redis: dict[str, str] = field(repr=False, default_factory=lambda: {s: _password() for s in REDIS_RULES})
    redis_admin: str = field(repr=False, default_factory=lambda: _password())
    postgres_superuser: str = field(repr=False, default_factory=lambda: _password())
    ledger_owner: str = field(repr=False, default_factory=lambda: _password())
    ledger_writer: str = field(repr=False, default_factory=lambda: _password())


def _password() -> str:
    return secrets.token_urlsafe(18)
