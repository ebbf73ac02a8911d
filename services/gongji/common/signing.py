"""Message authenticity on the input topics: an HMAC per record, in the `gongji-signature` header.

A producer signs the canonical bytes of a record (`canonical`): a version tag, the algorithm and
key id, then the topic, the record key, the `gongji-type` header and the value, each length-prefixed,
so a signature made for one topic, key, type or value verifies for no other. HMAC-SHA256 by
default; HMAC-SM3 (GB/T 32905, the national platform's algorithm family) through `cryptography`'s
bundled OpenSSL, the same on every machine. Keys come from a small TOML file naming, per key id,
its algorithm, a file holding its secret (a mounted secret) and the regions it may speak for; several
keys at once, so a new key id is added, producers move to it, and the old one is removed later.
Secrets never leave this module: a key's repr shows its id only.
"""

from __future__ import annotations

import hmac as std_hmac
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from gongji.contract.wire import SIGNATURE_HEADER, TYPE_HEADER, header

if TYPE_CHECKING:
    from gongji.settings import Settings

VERSION = b"gongji-input/1"
ALGORITHMS = ("hmac-sha256", "hmac-sm3")
DEFAULT_ALGORITHM = "hmac-sha256"
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REGION = re.compile(r"^[0-9]{6}$")
MIN_SECRET_BYTES = 32  # 256 bits: a secret as long as the MAC


class KeyFileError(ValueError):
    """The keys file (or a secret it names) cannot be used; the message names the file and the field."""


def _field(data: bytes | None) -> bytes:
    # Length-prefixed, so no two field lists share an encoding; None (no key) is not b"".
    if data is None:
        return b"\xff\xff\xff\xff"
    return len(data).to_bytes(4, "big") + data


def canonical(algorithm: str, key_id: str, topic: str, key: bytes | None, kind: bytes | None,
              value: bytes | None) -> bytes:
    """The bytes a record's MAC is computed over."""
    return b"".join([VERSION, _field(algorithm.encode()), _field(key_id.encode()), _field(topic.encode()),
                     _field(key), _field(kind), _field(value)])


def mac(algorithm: str, secret: bytes, data: bytes) -> bytes:
    """HMAC of `data` under `secret` with `algorithm` (one of ALGORITHMS)."""
    if algorithm == "hmac-sha256":
        return std_hmac.new(secret, data, "sha256").digest()
    if algorithm == "hmac-sm3":
        h = crypto_hmac.HMAC(secret, hashes.SM3())
        h.update(data)
        return h.finalize()
    raise ValueError(f"unknown algorithm {algorithm!r}")


@dataclass(frozen=True)
class Key:
    """One signing key: its id, algorithm, secret (never shown) and the regions it may speak for
    (None: every region)."""

    key_id: str
    algorithm: str
    secret: bytes = field(repr=False)
    regions: frozenset[str] | None = None

    def sign(self, topic: str, key: bytes | None, kind: bytes | None, value: bytes | None) -> bytes:
        """The `gongji-signature` header value for this record."""
        digest = mac(self.algorithm, self.secret, canonical(self.algorithm, self.key_id, topic, key, kind, value))
        return f"kid={self.key_id};alg={self.algorithm};mac={digest.hex()}".encode()

    def headers(self, topic: str, key: bytes | None, kind: str, value: bytes) -> list[tuple[str, bytes]]:
        """The headers of a signed input record: its type and its signature."""
        return [(TYPE_HEADER, kind.encode()), (SIGNATURE_HEADER, self.sign(topic, key, kind.encode(), value))]


@dataclass(frozen=True)
class Verdict:
    """What verification says of one record: `key` the key that signed it (None: unsigned), or
    `refused` the reason it must not be taken."""

    key: Key | None = None
    refused: str | None = None


SIGNATURE = re.compile(r"^kid=([A-Za-z0-9._-]{1,64});alg=([a-z0-9-]{1,32});mac=([0-9a-f]{1,128})$")


@dataclass(frozen=True)
class KeyRing:
    """The keys a verifier accepts, by id; `require` refuses unsigned records."""

    keys: Mapping[str, Key]
    require: bool = False

    def verify(self, topic: str, key: bytes | None, headers: Iterable[tuple[str, bytes]] | None,
               value: bytes | None) -> Verdict:
        headers = list(headers or ())
        signature = header(headers, SIGNATURE_HEADER)
        if signature is None:
            return Verdict(refused="unsigned input (GONGJI_REQUIRE_SIGNED_INPUT is on)") if self.require else Verdict()
        if sum(name == SIGNATURE_HEADER for name, _ in headers) > 1:
            return Verdict(refused=f"more than one {SIGNATURE_HEADER} header")
        try:
            match = SIGNATURE.match(signature.decode("ascii"))
        except UnicodeDecodeError:
            match = None
        if match is None:
            return Verdict(refused=f"malformed {SIGNATURE_HEADER} header (want kid=…;alg=…;mac=<hex>)")
        key_id, algorithm, given = match.groups()
        signer = self.keys.get(key_id)
        if signer is None:
            return Verdict(refused=f"signed with unknown key id {key_id!r}")
        if algorithm != signer.algorithm:
            return Verdict(refused=f"key {key_id!r} signs with {signer.algorithm}, not {algorithm}")
        kind = header(headers, TYPE_HEADER)
        expected = mac(signer.algorithm, signer.secret, canonical(algorithm, key_id, topic, key, kind, value))
        if not std_hmac.compare_digest(expected.hex(), given):
            return Verdict(refused=f"signature by key {key_id!r} ({algorithm}) does not verify: not made over "
                                   "this topic, key, type and value")
        return Verdict(key=signer)


def load_keys(path: Path, require: bool = False) -> KeyRing:
    """The key ring a keys file describes (README, "Signed input"):

        [keys.erenhot-2026a]
        algorithm = "hmac-sm3"             # or "hmac-sha256" (the default)
        secret_file = "erenhot-2026a.key"  # relative to this file; at least 32 bytes
        regions = ["152501"]               # left out: every region
    """
    path = Path(path)
    entries = key_table(path, "keys", "GONGJI_INPUT_KEYS_FILE", {"algorithm", "secret_file", "regions"}, KeyFileError)
    return KeyRing({key_id: _key(path, key_id, entry) for key_id, entry in entries.items()}, require)


def key_table(path: Path, table: str, setting: str, fields: set[str], error: type[Exception]) -> dict[str, dict]:
    """The `[table.<key id>]` entries of a TOML keys file (the input keys, the gateway's callers),
    each a table of no field but `fields` under a well-formed key id; `error` names the file and
    the field otherwise."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as failure:
        raise error(f"{setting} {path}: {failure.strerror}") from None
    except tomllib.TOMLDecodeError as failure:
        raise error(f"{setting} {path}: not TOML: {failure}") from None
    entries = document.get(table)
    if not isinstance(entries, dict) or not entries:
        raise error(f"{path}: no [{table}.<key id>] table")
    for key_id, entry in entries.items():
        where = f"{path}: {table}.{key_id}"
        if not KEY_ID.match(key_id):
            raise error(f"{where}: a key id is 1 to 64 of A-Z a-z 0-9 . _ -")
        if not isinstance(entry, dict):
            raise error(f"{where}: not a table")
        unknown = set(entry) - fields
        if unknown:
            raise error(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return entries


def secret_of(path: Path, where: str, entry: dict, whose: str, error: type[Exception]) -> bytes:
    """The secret an entry's `secret_file` holds (relative to the keys file, one trailing newline
    dropped), at least MIN_SECRET_BYTES long."""
    secret_file = entry.get("secret_file")
    if not isinstance(secret_file, str) or not secret_file:
        raise error(f"{where}.secret_file: the file holding the {whose} secret is required")
    secret_path = path.parent / secret_file
    try:
        secret = secret_path.read_bytes().rstrip(b"\r\n")
    except OSError as failure:
        raise error(f"{where}.secret_file: cannot read {secret_path}: {failure.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise error(f"{where}.secret_file: {secret_path} holds {len(secret)} bytes; a secret needs "
                    f"at least {MIN_SECRET_BYTES}")
    return secret


def _key(path: Path, key_id: str, entry: dict) -> Key:
    where = f"{path}: keys.{key_id}"
    algorithm = entry.get("algorithm", DEFAULT_ALGORITHM)
    if algorithm not in ALGORITHMS:
        raise KeyFileError(f"{where}.algorithm: {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    secret = secret_of(path, where, entry, "key's", KeyFileError)
    regions = entry.get("regions")
    if regions is not None:
        if not isinstance(regions, list) or not regions or not all(isinstance(r, str) and REGION.match(r)
                                                                   for r in regions):
            raise KeyFileError(f"{where}.regions: a list of six-digit region codes (leave it out for every region)")
        regions = frozenset(regions)
    return Key(key_id, algorithm, secret, regions)


def key_ring(settings: Settings) -> KeyRing | None:
    """The verifier's key ring from the settings (None: no keys file, nothing verified)."""
    if settings.input_keys_file is None:
        return None
    return load_keys(settings.input_keys_file, settings.require_signed_input)


def signer(settings: Settings) -> Key | None:
    """The key Gongji's own producers sign input with (None: they send it unsigned)."""
    if settings.input_signing_key is None:
        return None
    ring = load_keys(settings.input_keys_file)
    if settings.input_signing_key not in ring.keys:
        raise KeyFileError(f"GONGJI_INPUT_SIGNING_KEY {settings.input_signing_key!r} is not in {settings.input_keys_file}")
    return ring.keys[settings.input_signing_key]
