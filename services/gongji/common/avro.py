"""Avro single-object encoding of Gongji events, at the dict level.

Every message on a Gongji topic is one Avro record in the single-object encoding of the Avro
specification: the marker ``C3 01``, the writer schema's 8-byte CRC-64-AVRO fingerprint of its
Parsing Canonical Form (little-endian), then the Avro binary body. The fingerprint is how a
reader finds the writer schema; the reader then resolves the record to its own current schema of
the same full name, so producers and consumers can move to a new schema version at different
times (only optional fields with defaults are ever added; see ``schemas/history/``).

The ``.avsc`` files in ``gongji.schemas`` are the source of truth. :class:`SchemaCatalog` parses
them once; encoding and decoding then do no schema work per message. Turning these dicts into
domain objects (and choosing what goes on the wire) is the job of the mapper above this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from io import BytesIO
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from gongji.common.avro_codegen import Writer, compile_decimals, compile_writer

__all__ = ["MARKER", "HEADER_SIZE", "CodecError", "DecodeError", "EncodeError", "SchemaError", "SchemaCatalog",
           "fingerprint_of", "load_packaged_schema"]

MARKER = b"\xc3\x01"
"""Avro single-object encoding marker (format version 1)."""
HEADER_SIZE = 10
"""Marker (2 bytes) + CRC-64-AVRO fingerprint (8 bytes)."""

NAMESPACE = "gongji"
_SCHEMA_PACKAGE = "gongji.schemas"
_HISTORY_DIR = "history"

Schema = Mapping[str, Any] | str | bytes
"""An Avro record schema: a dict as in an .avsc file, or its JSON text."""


class CodecError(ValueError):
    """Something on the Avro wire, or a schema for it, is not acceptable."""


class DecodeError(CodecError):
    """A message is not a decodable Avro single-object encoded Gongji event; ``str()`` says why."""


class UnknownSchemaError(DecodeError):
    """The writer schema's fingerprint is not in the catalog (yet): see gongji.common.schemas."""

    def __init__(self, message: str, fingerprint: bytes):
        super().__init__(message)
        self.fingerprint = fingerprint


class EncodeError(CodecError):
    """A record cannot be encoded with the current schema of its name."""


class SchemaError(CodecError):
    """A schema is invalid, or clashes with one the catalog already holds."""


def fingerprint_of(schema: Schema) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, as the 8 bytes
    that follow the marker on the wire (little-endian)."""
    parsed = _parse(schema)
    # fastavro returns the hex of the little-endian bytes (Java's order), not of the 64-bit
    # number: bytes.fromhex gives exactly the wire bytes.
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def load_packaged_schema(relative_path: str) -> dict[str, Any]:
    """The JSON of one schema file shipped in ``gongji.schemas``, e.g. ``"history/claim.v1.avsc"``."""
    resource = files(_SCHEMA_PACKAGE).joinpath(*relative_path.split("/"))
    return json.loads(resource.read_text(encoding="utf-8"))


def _packaged_schemas(subdir: str | None) -> list[dict[str, Any]]:
    root = files(_SCHEMA_PACKAGE)
    folder = root.joinpath(subdir) if subdir else root
    if not folder.is_dir():
        return []
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".avsc"))
    prefix = f"{subdir}/" if subdir else ""
    return [load_packaged_schema(prefix + name) for name in names]


def _parse(schema: Schema) -> dict[str, Any]:
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise SchemaError(f"schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, Mapping):
        raise SchemaError(f"schema must be a JSON object (an Avro record), got {type(schema).__name__}")
    try:
        parsed = fastavro.parse_schema(dict(schema))
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise SchemaError(f"invalid Avro schema {schema.get('name')!r}: {exc}") from exc
    if parsed.get("type") != "record":
        raise SchemaError(f"schema {schema.get('name')!r} must be an Avro record, got type {parsed.get('type')!r}")
    return parsed


def _logical_types(schema: Any) -> list[tuple[Any, ...]]:
    """Logical types with their parameters, in schema order.

    The Parsing Canonical Form drops ``logicalType``, ``precision`` and ``scale``, so two schemas
    that differ only in a decimal's scale have the same fingerprint; this tells them apart.
    """
    found: list[tuple[Any, ...]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, Mapping):
            if "logicalType" in node:
                found.append((node["logicalType"], node.get("precision"), node.get("scale")))
            for key in ("type", "items", "values"):
                if key in node and not isinstance(node[key], str):
                    walk(node[key])
            for field in node.get("fields", ()):
                walk(field["type"])

    walk(schema)
    return found


def _describe(fp: bytes) -> str:
    return f"{fp.hex()} (as a 64-bit number: 0x{int.from_bytes(fp, 'little'):016x})"


@dataclass(frozen=True, slots=True)
class _Writer:
    """A schema this catalog can encode with (the current one of its name)."""

    full_name: str
    schema: dict[str, Any]
    header: bytes
    # The same schema with its decimal annotations removed: decimals are bytes on the wire and the
    # Parsing Canonical Form drops logical types, so it writes identical bytes under the same
    # fingerprint, without fastavro's per-field logical-type dispatch (half the cost of a record).
    unscaled: dict[str, Any]
    # Its writer generated once (gongji.common.avro_codegen): fastavro's bytes, faster; None: fastavro.
    compiled: Writer | None


def _without_decimal_annotations(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("logicalType") == "decimal":
            return {k: _without_decimal_annotations(v) for k, v in node.items()
                    if k not in ("logicalType", "precision", "scale")}
        return {k: _without_decimal_annotations(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_without_decimal_annotations(item) for item in node]
    return node


def _without_internal_keys(node: Any) -> Any:
    """A parsed schema back to plain Avro JSON (fastavro adds keys starting with "__")."""
    if isinstance(node, dict):
        return {k: _without_internal_keys(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_without_internal_keys(item) for item in node]
    return node


def _unscaled_twin(parsed: dict[str, Any], fp: bytes) -> dict[str, Any]:
    twin = fastavro.parse_schema(_without_decimal_annotations(parsed), _force=True)
    if fingerprint_of(twin) != fp:  # cannot happen by the spec; checked because the wire depends on it
        raise SchemaError(f"{parsed['name']}: stripping decimal annotations changed the fingerprint")
    return twin


@dataclass(frozen=True, slots=True)
class _Route:
    """How to read a body written with one writer schema: resolved once, used per message."""

    name: str  # short record name returned by decode, e.g. "Claim"
    full_name: str
    fingerprint: bytes
    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None: writer is the current schema, or no current exists
    logical: list[tuple[Any, ...]]
    # Read as the writer without decimal annotations, then its decimals made in one generated pass
    # (avro_codegen.compile_decimals): fastavro's record, faster. None: fastavro's own (a resolution).
    twin: dict[str, Any] | None = None
    decimals: Callable[[dict], None] | None = None


class SchemaCatalog:
    """The schemas a service knows, and the single-object codec that uses them.

    By default it loads every ``.avsc`` of ``gongji.schemas``: the top-level files are the
    current version of each record (what :meth:`encode` writes and :meth:`decode` resolves to),
    the files in ``history/`` are older writer versions that :meth:`decode` still accepts.
    Tests and tools may pass their own ``current`` and ``history`` schemas instead.
    All parsing happens here, once; :meth:`register` adds writer schemas learned at run time.
    """

    def __init__(
        self,
        current: Iterable[Schema] | None = None,
        history: Iterable[Schema] | None = None,
    ) -> None:
        if current is None:
            current = _packaged_schemas(None)
        if history is None:
            history = _packaged_schemas(_HISTORY_DIR)
        self._writers: dict[str, _Writer] = {}
        self._routes: dict[bytes, _Route] = {}
        for schema in current:
            parsed = _parse(schema)
            full_name = parsed["name"]
            if full_name in self._writers:
                raise SchemaError(f"two current schemas are named {full_name}")
            fp = fingerprint_of(parsed)
            twin = _unscaled_twin(parsed, fp)
            writer = _Writer(full_name, parsed, MARKER + fp, twin, compile_writer(parsed))
            self._writers[full_name] = writer
            namespace, _, short = full_name.rpartition(".")
            if namespace == NAMESPACE:  # encode("Claim") as well as encode("gongji.Claim")
                self._writers[short] = writer
            self._add_route(parsed, fp)
        for schema in history:
            self.register(schema)

    # -- schemas ------------------------------------------------------------------------------

    def register(self, schema: Schema) -> bytes:
        """Accept messages written with ``schema`` (a dict or its JSON text) from now on.

        Returns its fingerprint (the 8 bytes after the marker). Registering a schema the catalog
        already holds is a no-op. Raises :class:`SchemaError` for an invalid schema, or for one
        with the fingerprint of a known schema but other decimal precision or scale (which the
        fingerprint cannot see and which would silently change amounts).
        """
        parsed = _parse(schema)
        fp = fingerprint_of(parsed)
        known = self._routes.get(fp)
        if known is not None:
            if known.logical != _logical_types(parsed):
                raise SchemaError(
                    f"schema {parsed['name']} has the fingerprint {_describe(fp)} of a known schema "
                    f"but other logical types {_logical_types(parsed)} != {known.logical}: "
                    "decimal precision or scale cannot change without a new field"
                )
            return fp
        self._add_route(parsed, fp)
        return fp

    def _add_route(self, parsed: dict[str, Any], fp: bytes) -> None:
        full_name = parsed["name"]
        current = self._writers.get(full_name)
        reader = None
        if current is not None and current.header[2:] != fp:
            reader = current.schema
        decimals = compile_decimals(parsed) if reader is None else None
        twin = _unscaled_twin(parsed, fp) if decimals is not None else None
        self._routes[fp] = _Route(full_name.rpartition(".")[2], full_name, fp, parsed, reader,
                                  _logical_types(parsed), twin, decimals)

    @property
    def names(self) -> frozenset[str]:
        """Full names of the records this catalog can encode, e.g. ``gongji.Claim``."""
        return frozenset(w.full_name for w in self._writers.values())

    def schema(self, name: str) -> dict[str, Any]:
        """The parsed current schema of a record (short or full name). Do not modify it."""
        return self._writer(name).schema

    def fingerprint(self, name: str) -> bytes:
        """The fingerprint (8 wire bytes) of the current schema of a record (short or full name)."""
        return self._writer(name).header[2:]

    def _writer(self, name: str) -> _Writer:
        try:
            return self._writers[name]
        except KeyError:
            raise EncodeError(
                f"no current schema named {name!r}; known: {', '.join(sorted(self.names))}"
            ) from None

    # -- codec --------------------------------------------------------------------------------

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Single-object encoding of ``record`` with the current schema named ``name``
        (``"Claim"`` or ``"gongji.Claim"``).

        Money and ratios must be :class:`~decimal.Decimal` with no more places than the schema's
        scale (no silent rounding); optional fields may be left out. A missing required field, a
        key the schema does not know, or a wrong type raises :class:`EncodeError`.
        """
        writer = self._writers.get(name) or self._writer(name)
        buf = BytesIO()
        buf.write(writer.header)
        try:
            # strict_allow_default: unknown keys (typos, data that should not leave) fail loudly
            # instead of being dropped; fields with a default may still be omitted.
            fastavro.schemaless_writer(buf, writer.schema, record, strict_allow_default=True)
        except Exception as exc:  # fastavro raises ValueError, TypeError, AttributeError, ...
            raise EncodeError(f"cannot encode {writer.full_name}: {exc}") from exc
        return buf.getvalue()

    def known_fingerprints(self) -> frozenset[bytes]:
        """Every writer schema this catalog can read."""
        return frozenset(self._routes)

    def current_schemas(self) -> list[tuple[bytes, str]]:
        """(fingerprint, schema JSON) of every current schema, to publish for other readers."""
        seen, found = set(), []
        for writer in self._writers.values():
            if writer.full_name not in seen:
                seen.add(writer.full_name)
                clean = _without_internal_keys(writer.schema)
                found.append((writer.header[2:], json.dumps(clean, ensure_ascii=False, sort_keys=True)))
        return found

    def encode_unscaled(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Like :meth:`encode`, with every decimal already given as the bytes of its unscaled
        integer (:func:`decimal_bytes`; fen for money), or, for a schema the generated writer
        compiles (all of Gongji's), as that integer itself: the settlement hot path."""
        writer = self._writers.get(name) or self._writer(name)
        if writer.compiled is not None:
            out = bytearray(writer.header)
            try:
                writer.compiled(record, out)
            except Exception as exc:
                raise EncodeError(f"cannot encode {writer.full_name}: {type(exc).__name__}: {exc}") from exc
            return bytes(out)
        buf = BytesIO()
        buf.write(writer.header)
        try:
            fastavro.schemaless_writer(buf, writer.unscaled, record, strict_allow_default=True)
        except Exception as exc:
            raise EncodeError(f"cannot encode {writer.full_name}: {exc}") from exc
        return buf.getvalue()

    def object_encoder(self, name: str, convert: Mapping[str, Any] | None = None) -> Callable[[Any], bytes]:
        """What :meth:`encode_unscaled` gives, from an object whose attributes are the record's fields
        (nested records too): no dict in between. `convert`: see avro_codegen.compile_writer."""
        writer = self._writer(name)
        write = compile_writer(writer.schema, attributes=True, convert=dict(convert or {}))
        if write is None:
            raise EncodeError(f"{writer.full_name} has a union the generated writer does not compile")

        def encode(value: Any) -> bytes:
            out = bytearray(writer.header)
            try:
                write(value, out)
            except Exception as exc:
                raise EncodeError(f"cannot encode {writer.full_name}: {type(exc).__name__}: {exc}") from exc
            return bytes(out)
        return encode

    def decode(self, data: bytes | bytearray | memoryview | None) -> tuple[str, dict[str, Any]]:
        """Decode one single-object encoded message into ``(short record name, record)``.

        The body is read with the writer schema found by fingerprint and resolved to the current
        schema of the same full name (fields added since are filled with their defaults, fields
        removed since are dropped). A writer schema with no current schema of its name is read
        as written. Anything wrong with ``data`` raises :class:`DecodeError` and nothing else.
        """
        name, record, decimals = self.decode_unscaled(data)
        if decimals is not None:
            try:  # bytes the twin read always convert; kept to the promise above all the same
                decimals(record)
            except Exception as exc:
                raise DecodeError(f"a decimal of a {name} record cannot be read: {exc}") from exc
        return name, record

    def decode_unscaled(self, data: bytes | bytearray | memoryview | None) -> tuple[str, dict, Callable | None]:
        """As :meth:`decode`, with ``decimals``: None, or the record's decimals are still the bytes of their
        unscaled integers (at the schema's scale) and ``decimals(record)`` makes them decode's, in place."""
        if not data:
            raise DecodeError("empty message (no value, e.g. a tombstone): expected an Avro single-object "
                              "encoded event")
        size = len(data)
        if size < HEADER_SIZE:
            raise DecodeError(f"message is only {size} byte(s): too short for the {HEADER_SIZE}-byte Avro "
                              "single-object header (marker c3 01 + 8-byte schema fingerprint)")
        if data[:2] != MARKER:
            raise DecodeError(_wrong_marker(bytes(data[:2])))
        fp = bytes(data[2:HEADER_SIZE])
        route = self._routes.get(fp)
        if route is None:
            raise UnknownSchemaError(
                f"unknown writer schema fingerprint {_describe(fp)}: the producer uses a schema "
                "this service has not got, nor found on the schemas topic; publish it there "
                "(the producer's service does on start) or deploy the schemas it was written with",
                fp,
            )
        buf = BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            if route.decimals is not None:
                record = fastavro.schemaless_reader(buf, route.twin, None)
            else:
                record = fastavro.schemaless_reader(buf, route.writer, route.reader)
        except Exception as exc:  # EOFError, IndexError, UnicodeDecodeError, resolution errors...
            raise DecodeError(_bad_body(route, exc, size)) from exc
        end = buf.tell()
        if end != size:
            raise DecodeError(
                f"{size - end} trailing byte(s) after a complete {route.full_name} record "
                f"({end} of {size} bytes used): not one single-object encoded event, or "
                "written with another schema under the same fingerprint"
            )
        return route.name, record, route.decimals


def _wrong_marker(start: bytes) -> str:
    hint = ""
    if start[:1] == b"\x00":
        hint = " (looks like Confluent Schema Registry framing: magic byte 0 + 4-byte schema id)"
    elif start[:1] in (b"{", b"["):
        hint = " (looks like JSON; this topic carries Avro single-object encoded events)"
    return (
        f"not Avro single-object encoding: expected marker c3 01, got {start.hex(' ')}{hint}"
    )


def _bad_body(route: _Route, exc: Exception, size: int) -> str:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, EOFError):
        what = f"body ends too early, after {size - HEADER_SIZE} byte(s): truncated? [{what}]"
    elif isinstance(exc, IndexError):
        what = f"body truncated, or an invalid union branch index [{what}]"
    target = ""
    if route.reader is not None:
        target = f", resolved to the current {route.full_name}"
    return (
        f"body does not match writer schema {route.full_name} "
        f"(fingerprint {route.fingerprint.hex()}{target}): {what}"
    )


def decimal_bytes(unscaled: int) -> bytes:
    """An Avro decimal's body, given its unscaled integer (fen, for scale 2): big-endian two's
    complement, as the specification has it. For SchemaCatalog.encode_unscaled; a test checks it
    encodes exactly as the Decimal does."""
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
