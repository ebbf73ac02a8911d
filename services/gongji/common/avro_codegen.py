"""Code generated from an Avro schema for the settlement hot path: a writer, and a decoder's decimals.

Reading: fastavro reads a record's decimals through a logical-type hook per value (half a claim's
decode). `compile_decimals(schema)` gives a function that turns, in place, the unscaled bytes
fastavro returns for the schema without its decimal annotations into the Decimals it would have
returned with them (the same context: the field's precision, then scaleb by its scale).

Writing: 
`compile_writer(schema)` turns a parsed record schema into one Python function, specialised to its
fields in their order (no per-field dispatch on the schema, as fastavro's generic writer does), that
appends the record's binary body to a bytearray. It writes exactly what fastavro's
`schemaless_writer(..., strict_allow_default=True)` writes for the schema with its decimal
annotations removed (tests compare the two over synthetic traffic and generated records): a missing
field takes its default, a missing field without one or an unknown key fails. A decimal is given as
the bytes of its unscaled integer (`avro.decimal_bytes`) or as the integer itself (fen for money).
Or it reads an object's attributes instead of a dict's keys (`attributes`): the settlement service
writes the engine's Settlement that way, without building the wire dict first.

Unions other than null and one type are not compiled (None is returned; the caller keeps fastavro).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any

Writer = Callable[[Any, bytearray], None]


class _Unsupported(Exception):
    pass


_ZIGZAG = [bytes([((n << 1) ^ (n >> 63)) & 0x7F]) if n >= 0 else bytes([(-n << 1) - 1]) for n in range(-64, 64)]


def _long(n: int) -> bytes:
    """The zigzag varint of a long (fastavro's write_long)."""
    if -64 <= n < 64:
        return _ZIGZAG[n + 64]
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError(f"{n} does not fit an Avro long")
    n = (n << 1) if n >= 0 else (-n << 1) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _int(n: int) -> bytes:
    if not -(1 << 31) <= n < (1 << 31):
        raise OverflowError(f"{n} does not fit an Avro int")
    return _long(n)


def _unscaled(value: bytes | int) -> bytes:
    """A decimal's body: given bytes as they are, an unscaled int as its two's complement bytes."""
    if type(value) is int:
        return value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
    if not isinstance(value, bytes):
        raise TypeError(f"a decimal must be given unscaled (bytes or int), not {type(value).__name__}")
    return value


class _SizedUnscaled(dict):
    """An unscaled integer → its Avro bytes body, size first: amounts repeat (0 above all). Bounded."""

    def __missing__(self, number: int) -> bytes:
        body = _unscaled(number)
        sized = _long(len(body)) + body
        if len(self) < 65_536:
            self[number] = sized
        return sized


def _unknown(record: Any, names: frozenset[str], full_name: str) -> None:
    if not isinstance(record, dict):
        raise TypeError(f"{full_name} must be a dict, not {type(record).__name__}")
    extra = sorted(set(record) - names)
    if extra:
        raise ValueError(f"{full_name}: field(s) {', '.join(map(str, extra))} not in the schema")


class _Compiler:
    def __init__(self, attributes: bool, convert: dict[str, Callable[[Any], Any]]) -> None:
        self.attributes = attributes
        self.convert = convert
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {
            "_long": _long, "_int": _int, "_unscaled": _unscaled, "_unknown": _unknown, "_ZZ": _ZIGZAG,
            "_SIZED": _SizedUnscaled(),
            "_pack_f": struct.Struct("<f").pack, "_pack_d": struct.Struct("<d").pack, "_MISSING": object()}
        self.functions: dict[str, str] = {}  # full record name → function name
        self.named: dict[str, Any] = {}
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        name = self.name("_c")
        self.constants[name] = value
        return name

    def record(self, schema: dict[str, Any]) -> str:
        full_name = schema["name"]
        if full_name in self.functions:
            return self.functions[full_name]
        function = self.functions[full_name] = self.name("_record")
        self.named[full_name] = schema
        body: list[str] = []
        defaults = 0
        for field in schema["fields"]:
            value = self.name("v")
            if self.attributes:
                body.append(f"{value} = r.{field['name']}")
            elif "default" in field:
                defaults += 1
                body.append(f"{value} = r.get({field['name']!r}, _MISSING)")
                body.append(f"if {value} is _MISSING:")
                body.append(f"    {value} = {self.constant(field['default'])}; missing += 1")
            else:
                body.append(f"{value} = r[{field['name']!r}]")
            convert = self.convert.get(f"{full_name}.{field['name']}")
            if convert is not None:
                body.append(f"{value} = {self.constant(convert)}({value})")
            body.extend(self.value(field["type"], value))
        names = self.constant(frozenset(field["name"] for field in schema["fields"]))
        head = [f"def {function}(r, out):", "    missing = 0"] if defaults else [f"def {function}(r, out):"]
        if self.attributes:  # an object's attributes: no keys to check
            self.lines += head + [f"    {line}" for line in body] + [""]
            return function
        size = len(schema["fields"])
        check = f"len(r) != {size} - missing" if defaults else f"len(r) != {size}"
        self.lines += head + [f"    {line}" for line in body] + [
            f"    if {check}:", f"        _unknown(r, {names}, {full_name!r})", ""]
        return function

    def value(self, schema: Any, value: str) -> list[str]:
        if isinstance(schema, list):
            return self.union(schema, value)
        if isinstance(schema, str):
            if schema in self.functions:  # a record named before
                return [f"{self.functions[schema]}({value}, out)"]
            schema = self.named.get(schema) or {"type": schema}
        kind = schema["type"]
        if isinstance(kind, (dict, list)):
            return self.value(kind, value)
        if kind == "null":
            return [f"if {value} is not None: raise TypeError('not null: ' + repr({value}))"]
        if kind == "boolean":
            return [f"out += b'\\x01' if {value} else b'\\x00'"]
        if kind == "int":
            return [f"out += _int({value})"]
        if kind == "long":
            return [f"out += _ZZ[{value} + 64] if -64 <= {value} < 64 else _long({value})"]
        if kind == "float":
            return [f"out += _pack_f({value})"]
        if kind == "double":
            return [f"out += _pack_d({value})"]
        if kind == "string":
            data = self.name("b")
            return [f"{data} = {value}.encode()", *self.sized(data)]
        if kind == "bytes":
            if schema.get("logicalType") == "decimal":
                # An int is the unscaled value itself (fen for money), its sized bytes kept once written.
                return [f"if type({value}) is int:", f"    out += _SIZED[{value}]", "else:",
                        f"    {value} = _unscaled({value})", *(f"    {line}" for line in self.sized(value))]
            return [f"if not isinstance({value}, bytes): raise TypeError('not bytes: ' + type({value}).__name__)",
                    *self.sized(value)]
        if kind == "record":
            return [f"{self.record(schema)}({value}, out)"]
        if kind == "array":
            item = self.name("i")
            return [f"if {value}:", f"    out += _long(len({value}))", f"    for {item} in {value}:",
                    *(f"        {line}" for line in self.value(schema["items"], item)), "out += b'\\x00'"]
        if kind == "map":
            key, item = self.name("k"), self.name("i")
            return [f"if {value}:", f"    out += _long(len({value}))", f"    for {key}, {item} in {value}.items():",
                    *(f"        {line}" for line in [f"{key} = {key}.encode()", *self.sized(key)]),
                    *(f"        {line}" for line in self.value(schema["values"], item)), "out += b'\\x00'"]
        if kind == "enum":
            self.named[schema["name"]] = schema
            indexes = self.constant({symbol: index for index, symbol in enumerate(schema["symbols"])})
            return [f"out += _long({indexes}[{value}])"]
        if kind == "fixed":
            self.named[schema["name"]] = schema
            return [f"if len({value}) != {schema['size']}: raise ValueError('fixed of {schema['size']} bytes')",
                    f"out += {value}"]
        raise _Unsupported(kind)

    def union(self, branches: list[Any], value: str) -> list[str]:
        others = [branch for branch in branches if branch != "null"]
        if len(others) != 1 or len(branches) != 2:
            raise _Unsupported("union")
        null = _long(branches.index("null"))
        other = _long(branches.index(others[0]))
        return [f"if {value} is None:", f"    out += {null!r}", "else:", f"    out += {other!r}",
                *(f"    {line}" for line in self.value(others[0], value))]

    def sized(self, data: str) -> list[str]:
        size = self.name("n")
        return [f"{size} = len({data})", f"out += _ZZ[{size} + 64] if {size} < 64 else _long({size})", f"out += {data}"]


def compile_writer(schema: dict[str, Any], attributes: bool = False,
                   convert: dict[str, Callable[[Any], Any]] | None = None) -> Writer | None:
    """A function (record, out) appending the record's Avro body to `out`; None if the schema has a
    union this module does not compile. With `attributes`, the record and its nested records are
    objects whose attributes are the fields (an engine's result written with no dict in between);
    `convert` maps "full record name.field" to a function applied to that field's value first."""
    compiler = _Compiler(attributes, convert or {})
    try:
        entry = compiler.record(schema)
    except _Unsupported:
        return None
    source = "\n".join(compiler.lines)
    namespace = dict(compiler.constants)
    exec(compile(source, f"<avro writer {schema['name']}>", "exec"), namespace)  # noqa: S102 - our own schema's code
    return namespace[entry]


def _decimal_reader(precision: int, scale: int) -> Callable[[bytes], Decimal]:
    """fastavro's read_decimal for one field: the context's precision is the field's. A Decimal is
    immutable, so the same bytes give the same object from a bounded cache (counts, prices and
    ratios repeat from claim to claim)."""
    context = Context(prec=precision)
    create, from_bytes = context.create_decimal, int.from_bytes
    seen: dict[bytes, Decimal] = {}

    def read(data: bytes) -> Decimal:
        value = seen.get(data)
        if value is None:
            value = create(from_bytes(data, "big", signed=True)).scaleb(-scale, context)
            if len(seen) < 4096:
                seen[data] = value
        return value
    return read


class _Decimals:
    """Generates the in-place conversion of a record's decimal fields; a record with none is skipped."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0
        self.functions: dict[str, str | None] = {}
        self.named: dict[str, Any] = {}
        self.done: set[str] = set()

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def record(self, schema: dict[str, Any]) -> str | None:
        full_name = schema["name"]
        if full_name in self.functions:
            if self.functions[full_name] is None and full_name not in self.done:
                raise _Unsupported("recursive record")
            return self.functions[full_name]
        self.functions[full_name] = None
        self.named[full_name] = schema
        body: list[str] = []
        for field in schema["fields"]:
            value = self.name("v")
            code = self.value(field["type"], value)
            if code:
                body += [f"{value} = r[{field['name']!r}]", *code(f"r[{field['name']!r}]")]
        self.done.add(full_name)
        if not body:
            return None
        function = self.functions[full_name] = self.name("_decimals")
        self.lines += [f"def {function}(r):", *(f"    {line}" for line in body), ""]
        return function

    def value(self, schema: Any, value: str) -> Callable[[str], list[str]] | None:
        """None if `schema` holds no decimal; else code storing the converted `value` to a target."""
        if isinstance(schema, list):
            branches = [branch for branch in schema if branch != "null"]
            if len(branches) != 1 or len(schema) != 2:
                if any(self.value(branch, value) for branch in branches):
                    raise _Unsupported("union with a decimal")
                return None
            inner = self.value(branches[0], value)
            if inner is None:
                return None
            return lambda target: [f"if {value} is not None:", *(f"    {line}" for line in inner(target))]
        if isinstance(schema, str):
            if schema not in self.named:
                return None  # a primitive
            schema = self.named[schema]
            if schema["type"] == "record":
                function = self.functions.get(schema["name"])
                return None if function is None else (lambda target: [f"{function}({value})"])
        kind = schema["type"]
        if isinstance(kind, (dict, list)):
            return self.value(kind, value)
        if schema.get("logicalType") == "decimal":
            if kind != "bytes":
                raise _Unsupported("fixed decimal")
            reader = self.name("_d")
            self.constants[reader] = _decimal_reader(schema["precision"], schema.get("scale", 0))
            return lambda target: [f"{target} = {reader}({value})"]
        if kind == "record":
            function = self.record(schema)
            return None if function is None else (lambda target: [f"{function}({value})"])
        if kind in ("enum", "fixed"):
            self.named[schema["name"]] = schema
            return None
        if kind == "array":
            item = self.name("i")
            inner = self.value(schema["items"], item)
            if inner is None:
                return None
            at = self.name("n")
            return lambda target: [f"for {at}, {item} in enumerate({value}):",
                                   *(f"    {line}" for line in inner(f"{value}[{at}]"))]
        if kind == "map":
            if self.value(schema["values"], self.name("i")):
                raise _Unsupported("map of decimals")
            return None
        return None


def compile_decimals(schema: dict[str, Any]) -> Callable[[dict], None] | None:
    """A function turning, in place, a record read with `schema`'s decimal annotations removed into
    the record fastavro reads with them. A no-op function for a record without decimals; None for a
    schema it does not handle (a fixed decimal, a decimal in a map or a union of several types)."""
    generator = _Decimals()
    try:
        entry = generator.record(schema)
    except _Unsupported:
        return None
    if entry is None:
        return lambda record: None
    namespace = dict(generator.constants)
    exec(compile("\n".join(generator.lines), f"<avro decimals {schema['name']}>", "exec"), namespace)  # noqa: S102
    return namespace[entry]
