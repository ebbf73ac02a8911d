"""Who may call the gateway: an institution's key id and secret, and the institutions it acts for.

A caller signs each request: `X-Gongji-Caller: <key id>`, `X-Gongji-Timestamp: <Unix seconds>`,
`X-Gongji-Signature: <hex HMAC-SHA256>` over `gongji-gateway/1`, the key id, the timestamp and the
body, each on a line of its own. The timestamp must be within `skew` of the gateway's clock, so a
captured request cannot be replayed later; within the window a replay is the same msgid, answered
with the stored answer and never settled again. The secret never travels. Keys come from a TOML file
like the input keys (GONGJI_GATEWAY_CALLERS_FILE):

    [callers.his-h001]
    secret_file = "his-h001.key"           # relative to this file; at least 32 bytes
    fixmedins_codes = ["H15250100001"]     # the institutions this caller acts for
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gongji.common.signing import key_table, secret_of

VERSION = b"gongji-gateway/1"
CALLER_HEADER, TIME_HEADER, SIGNATURE_HEADER = "X-Gongji-Caller", "X-Gongji-Timestamp", "X-Gongji-Signature"


class CallersFileError(ValueError):
    """The callers file cannot be used; the message names the file and the field."""


class Unauthenticated(ValueError):
    """A request whose caller cannot be established (HTTP 401)."""


@dataclass(frozen=True)
class Caller:
    key_id: str
    secret: bytes = field(repr=False)
    fixmedins_codes: frozenset[str] = frozenset()

    def sign(self, timestamp: int | str, body: bytes) -> str:
        message = b"\n".join([VERSION, self.key_id.encode(), str(timestamp).encode(), body])
        return hmac.new(self.secret, message, "sha256").hexdigest()

    def headers(self, timestamp: int, body: bytes) -> dict[str, str]:
        """The headers of a request this caller signs (what a HIS sends; tests and the bench too)."""
        return {CALLER_HEADER: self.key_id, TIME_HEADER: str(timestamp), SIGNATURE_HEADER: self.sign(timestamp, body)}


@dataclass(frozen=True)
class Callers:
    by_id: Mapping[str, Caller]
    skew: float = 300.0

    def authenticate(self, headers: Mapping[str, str], body: bytes, now: float) -> Caller:
        key_id, stamp, signature = (headers.get(name) for name in (CALLER_HEADER, TIME_HEADER, SIGNATURE_HEADER))
        if not key_id or not stamp or not signature:
            raise Unauthenticated(f"unauthenticated: {CALLER_HEADER}, {TIME_HEADER} and {SIGNATURE_HEADER} are required")
        caller = self.by_id.get(key_id)
        try:
            moment = int(stamp)
        except ValueError:
            raise Unauthenticated(f"unauthenticated: {TIME_HEADER} is not Unix seconds") from None
        # An unknown caller and a wrong signature are one answer: nothing tells a key id exists.
        if caller is None or not hmac.compare_digest(caller.sign(stamp, body), signature.lower()):
            raise Unauthenticated("unauthenticated: unknown caller or the signature does not verify")
        if abs(now - moment) > self.skew:
            raise Unauthenticated(f"unauthenticated: {TIME_HEADER} is more than {self.skew:.0f} s from the gateway's clock")
        return caller


def load_callers(path: Path, skew: float = 300.0) -> Callers:
    path = Path(path)
    entries = key_table(path, "callers", "GONGJI_GATEWAY_CALLERS_FILE", {"secret_file", "fixmedins_codes"},
                        CallersFileError)
    return Callers({key_id: _caller(path, key_id, entry) for key_id, entry in entries.items()}, skew)


def _caller(path: Path, key_id: str, entry: dict) -> Caller:
    where = f"{path}: callers.{key_id}"
    codes = entry.get("fixmedins_codes")
    secret = secret_of(path, where, entry, "caller's", CallersFileError)
    if not isinstance(codes, list) or not codes or not all(isinstance(code, str) and code for code in codes):
        raise CallersFileError(f"{where}.fixmedins_codes: a list of the institutions it acts for is required")
    return Caller(key_id, secret, frozenset(codes))
