"""Gongji's topics: their names, what each one is (partitions, replication, cleanup policy,
retention), and which topics each service reads and writes (docs/CONTRACT.md, "Topics").

Pure data; `gongji.common.topic_admin` creates them on a cluster and reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:  # settings name the topics; the specs read a few of its numbers
    from gongji.settings import Settings


class Topics(BaseModel):
    """Topic names (CONTRACT.md, "Topics"). A prefix lets several runs share one cluster."""

    claims: str = "claims"
    persons: str = "registry.persons"
    institutions: str = "registry.institutions"
    catalogue: str = "registry.catalogue"  # the centre's catalogue (就医地目录), one record per item version
    credits: str = "accounts.credits"
    settlements: str = "settlements"
    fraud_signals: str = "fraud.signals"
    clearing_statements: str = "clearing.statements"
    dead_letters: str = "dead-letters"
    schemas: str = "schemas"  # compacted: writer schemas by fingerprint (gongji.common.schemas)
    # The gateway's read-only questions (2206 pre-settlement, 5206 accumulators) and their answers,
    # which nothing but the gateway reads: no ledger, clearing, fraud or dashboard ever sees them.
    inquiries: str = "inquiries"
    inquiry_results: str = "inquiry-results"

    def prefixed(self, prefix: str) -> "Topics":
        return Topics(**{name: prefix + value for name, value in self.model_dump().items()})


@dataclass(frozen=True)
class TopicSpec:
    """One topic as Gongji wants it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of CONTRACT.md with its configs: the registries and `schemas` compacted (the
    latest value per key is the state, kept for ever); `dead-letters` and `clearing.statements`
    kept `topic_long_retention_ms`; every other topic `topic_retention_ms`."""
    topics = settings.topics
    compacted = {topics.persons, topics.institutions, topics.catalogue, topics.schemas}
    long_kept = {topics.dead_letters, topics.clearing_statements}
    specs = []
    for name in dict.fromkeys(getattr(topics, f) for f in type(topics).model_fields):
        if name in compacted:
            configs = {"cleanup.policy": "compact"}
        else:
            retention = settings.topic_long_retention_ms if name in long_kept else settings.topic_retention_ms
            configs = {"cleanup.policy": "delete", "retention.ms": str(retention)}
        if settings.topic_min_insync_replicas:
            configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
        specs.append(TopicSpec(name, settings.partitions, settings.replication_factor, configs))
    return specs


#: Which topics each service reads or writes (Topics field names): it creates any missing on
#: start-up, so none is left to a broker's auto-creation defaults.
SERVICE_TOPICS: Mapping[str, tuple[str, ...]] = {
    "settlement": ("claims", "credits", "persons", "institutions", "catalogue", "settlements", "dead_letters",
                   "schemas", "inquiries", "inquiry_results"),
    "ledger": ("settlements", "dead_letters"),
    "clearing": ("settlements", "clearing_statements", "dead_letters"),
    "fraud": ("settlements", "claims", "fraud_signals", "dead_letters"),
    "dashboard": ("settlements", "institutions", "fraud_signals", "clearing_statements", "dead_letters"),
    # An input producer for its callers (2207 claims, 2206/5206 inquiries), reading their results
    # without a group.
    "gateway": ("claims", "settlements", "inquiries", "inquiry_results"),
}
#: The records settlement accepts on each of its input topics (Topics field → Avro record names).
SETTLEMENT_INPUTS: Mapping[str, frozenset[str]] = {
    "claims": frozenset({"Claim", "Reversal"}),
    "credits": frozenset({"Credit"}),
    "persons": frozenset({"Person"}),
    "institutions": frozenset({"Institution"}),
    "catalogue": frozenset({"CatalogueItem"}),
}

#: The gateway's questions settlement answers on `inquiry_results` without changing any state: a
#: Claim there is a pre-settlement (2206), an AccumulatorQuery asks for a person's year (5206).
SETTLEMENT_INQUIRIES: Mapping[str, frozenset[str]] = {"inquiries": frozenset({"Claim", "AccumulatorQuery"})}


def service_topics(topics: Topics, service: str) -> list[str]:
    """The names of the topics `service` reads or writes."""
    return [getattr(topics, name) for name in SERVICE_TOPICS[service]]


def settlement_inputs(topics: Topics, inquiries: bool = False) -> dict[str, frozenset[str]]:
    """Settlement's input topics by name, each with the records it accepts there; with `inquiries`,
    the gateway's questions too (the service answers them; a rebuild has nothing to learn there)."""
    named = {**SETTLEMENT_INPUTS, **SETTLEMENT_INQUIRIES} if inquiries else SETTLEMENT_INPUTS
    return {getattr(topics, name): records for name, records in named.items()}
