"""Keyed pseudonyms for persons on screens: the dashboard's pages and JSON, the demo's summary.

A psn_no is a short, structured number (region and sequence): an unkeyed hash of it is undone by
trying every number. A pseudonym is HMAC-SHA256 under a secret key (GONGJI_PSEUDONYM_KEY or _FILE),
truncated to 16 hex digits (64 bits: among 100 million persons a collision is about a 1 in 3,000
chance, and the screens are views, not records). The same key gives the same pseudonym in every
process and after a restart; whoever holds the key and the registry can find the person again,
nobody else can. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "P-"
DIGITS = 16


class Pseudonym:
    """`pseudonym(psn_no)` → "P-" and 16 hex digits. Without a key, one of its own at random: stable
    for this process only."""

    def __init__(self, key: bytes | None):
        self.stable = key is not None
        self._key = key if key is not None else secrets.token_bytes(32)
        if not self._key:
            raise ValueError("a pseudonym key must not be empty")

    def __call__(self, psn_no: str) -> str:
        digest = hmac.new(self._key, psn_no.encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:DIGITS]

    def signal(self, signal_id: str) -> str:
        """A fraud signal's id as shown: the fraud service derives it from rule, psn_no and window
        without a key, and the page shows rule and window, so the id itself would give the person
        away to anyone trying every psn_no. "S-" and 16 hex digits under the same key."""
        digest = hmac.new(self._key, b"signal\0" + signal_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return "S-" + digest[:DIGITS]

    def __repr__(self) -> str:  # never the key
        return f"Pseudonym(stable={self.stable})"
