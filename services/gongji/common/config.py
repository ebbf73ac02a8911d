"""Typed settings for every Gongji process, read from the environment (prefix GONGJI_).

Built once in the composition root (the CLI) and passed down; nothing connects at import time.
Unset server addresses mean "use the local stack" (see gongji.common.stack).
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict


class Topics(BaseModel):
    """Topic names (CONTRACT.md, "Topics"). A prefix lets several runs share one cluster."""

    claims: str = "claims"
    persons: str = "registry.persons"
    institutions: str = "registry.institutions"
    credits: str = "accounts.credits"
    settlements: str = "settlements"
    fraud_signals: str = "fraud.signals"
    clearing_statements: str = "clearing.statements"
    dead_letters: str = "dead-letters"

    def prefixed(self, prefix: str) -> "Topics":
        return Topics(**{name: prefix + value for name, value in self.model_dump().items()})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GONGJI_", env_nested_delimiter="__")

    kafka_bootstrap_servers: str | None = None
    redis_url: str | None = None
    database_url: str | None = None
    topics: Topics = Topics()
    # Every Redis key starts with this, so several deployments (or tests) can share one server.
    key_prefix: str = "gj"
    settlement_group: str = "gongji-settlement"
    # Partitions for topics this project creates; the same key always lands on one partition.
    partitions: int = 6
