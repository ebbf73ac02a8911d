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
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gongji.common.signing import KEY_ID, MIN_SECRET_BYTES

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
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CallersFileError(f"GONGJI_GATEWAY_CALLERS_FILE {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise CallersFileError(f"GONGJI_GATEWAY_CALLERS_FILE {path}: not TOML: {error}") from None
    entries = document.get("callers")
    if not isinstance(entries, dict) or not entries:
        raise CallersFileError(f"{path}: no [callers.<key id>] table")
    return Callers({key_id: _caller(path, key_id, entry) for key_id, entry in entries.items()}, skew)


def _caller(path: Path, key_id: str, entry: object) -> Caller:
    where = f"{path}: callers.{key_id}"
    if not KEY_ID.match(key_id):
        raise CallersFileError(f"{where}: a key id is 1 to 64 of A-Z a-z 0-9 . _ -")
    if not isinstance(entry, dict):
        raise CallersFileError(f"{where}: not a table")
    unknown = set(entry) - {"secret_file", "fixmedins_codes"}
    if unknown:
        raise CallersFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    secret_file, codes = entry.get("secret_file"), entry.get("fixmedins_codes")
    if not isinstance(secret_file, str) or not secret_file:
        raise CallersFileError(f"{where}.secret_file: the file holding the caller's secret is required")
    if not isinstance(codes, list) or not codes or not all(isinstance(code, str) and code for code in codes):
        raise CallersFileError(f"{where}.fixmedins_codes: a list of the institutions it acts for is required")
    secret_path = path.parent / secret_file
    try:
        secret = secret_path.read_bytes().rstrip(b"\r\n")
    except OSError as error:
        raise CallersFileError(f"{where}.secret_file: cannot read {secret_path}: {error.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise CallersFileError(f"{where}.secret_file: {secret_path} holds {len(secret)} bytes; a secret needs "
                               f"at least {MIN_SECRET_BYTES}")
    return Caller(key_id, secret, frozenset(codes))
