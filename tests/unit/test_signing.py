"""Input signatures (gongji.common.signing): the canonical bytes, signing and verifying, the keys
file, and the two MACs against published known-answer vectors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gongji.common import signing
from gongji.common.signing import Key, KeyFileError, KeyRing, canonical, load_keys, mac
from gongji.contract.wire import SIGNATURE_HEADER, TYPE_HEADER
from gongji.settings import Settings

pytestmark = pytest.mark.unit

SECRET = b"s" * 32
OLD = Key("k2025", "hmac-sha256", SECRET)
NEW = Key("k2026", "hmac-sm3", b"t" * 40)
RECORD = ("claims", b"P1", "claim", b"\xc3\x01avro-bytes")


def signed(key: Key, topic="claims", record_key=b"P1", kind="claim", value=b"\xc3\x01avro-bytes"):
    return key.headers(topic, record_key, kind, value)


# ---------------------------------------------------------------- known answers

def test_hmac_sha256_matches_rfc_4231_test_case_2():
    assert mac("hmac-sha256", b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_hmac_sm3_matches_gm_t_0042_2015_appendix_d3():
    # GM/T 0042-2015 (三元对等密码安全协议测试规范) D.3, also in the Linux kernel's crypto testmgr.
    message = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" * 2
    assert mac("hmac-sm3", bytes(range(1, 33)), message).hex() == (
        "ca05e144ed05d1857840d1f318a4a8669e559fc8391f414485bfdf7bb408963a")


def test_an_unknown_algorithm_is_no_mac():
    with pytest.raises(ValueError):
        mac("hmac-md5", SECRET, b"x")


# ---------------------------------------------------------------- canonical bytes

def test_canonical_bytes_are_length_prefixed_and_versioned():
    assert canonical("hmac-sha256", "k", "claims", b"P1", b"claim", b"v") == (
        b"gongji-input/1" + b"\x00\x00\x00\x0bhmac-sha256" + b"\x00\x00\x00\x01k" + b"\x00\x00\x00\x06claims"
        + b"\x00\x00\x00\x02P1" + b"\x00\x00\x00\x05claim" + b"\x00\x00\x00\x01v")


def test_shifting_bytes_between_fields_changes_the_canonical_bytes():
    # Without length prefixes topic "claimsP" + key "1" would read as topic "claims" + key "P1".
    one = canonical("hmac-sha256", "k", "claims", b"P1", b"claim", b"v")
    assert one != canonical("hmac-sha256", "k", "claimsP", b"1", b"claim", b"v")
    assert one != canonical("hmac-sha256", "k", "claims", b"P1c", b"laim", b"v")


def test_no_key_is_not_an_empty_key():
    assert canonical("hmac-sha256", "k", "t", None, b"claim", b"v") != canonical("hmac-sha256", "k", "t", b"",
                                                                                   b"claim", b"v")


# ---------------------------------------------------------------- sign and verify

@pytest.mark.parametrize("key", [OLD, NEW], ids=["sha256", "sm3"])
def test_a_signed_record_verifies_and_names_its_key(key):
    ring = KeyRing({OLD.key_id: OLD, NEW.key_id: NEW}, require=True)
    verdict = ring.verify(*RECORD[:2], signed(key), RECORD[3])
    assert verdict.refused is None and verdict.key == key


def test_the_headers_carry_the_type_and_the_signature():
    headers = dict(signed(OLD))
    assert headers[TYPE_HEADER] == b"claim"
    assert headers[SIGNATURE_HEADER].startswith(b"kid=k2025;alg=hmac-sha256;mac=")


@pytest.mark.parametrize("change", [
    dict(topic="registry.persons"), dict(topic="other.claims"), dict(record_key=b"P2"), dict(record_key=None),
    dict(kind="credit"), dict(value=b"\xc3\x01avro-bytez"), dict(value=b""),
], ids=lambda change: next(iter(change)) + "=" + repr(next(iter(change.values()))))
def test_a_signature_does_not_verify_for_another_topic_key_type_or_value(change):
    ring = KeyRing({OLD.key_id: OLD})
    record = dict(topic="claims", record_key=b"P1", kind="claim", value=b"\xc3\x01avro-bytes")
    headers = signed(OLD, **record)
    moved = {**record, **change}
    # The signature goes along; the type header is the moved record's own.
    headers = [(TYPE_HEADER, moved["kind"].encode()), headers[1]]
    verdict = ring.verify(moved["topic"], moved["record_key"], headers, moved["value"])
    assert verdict.key is None and "does not verify" in verdict.refused


def test_a_tampered_mac_does_not_verify():
    kind, (name, signature) = signed(OLD)
    flipped = signature[:-1] + (b"0" if signature[-1:] != b"0" else b"1")
    verdict = KeyRing({OLD.key_id: OLD}).verify(*RECORD[:2], [kind, (SIGNATURE_HEADER, flipped)], RECORD[3])
    assert "does not verify" in verdict.refused


def test_an_unknown_key_id_is_refused_by_name():
    verdict = KeyRing({NEW.key_id: NEW}).verify(*RECORD[:2], signed(OLD), RECORD[3])
    assert verdict.refused == "signed with unknown key id 'k2025'"


def test_a_key_used_with_another_algorithm_is_refused():
    impostor = Key(OLD.key_id, "hmac-sm3", OLD.secret)
    verdict = KeyRing({OLD.key_id: OLD}).verify(*RECORD[:2], signed(impostor), RECORD[3])
    assert "signs with hmac-sha256, not hmac-sm3" in verdict.refused


def test_the_same_key_id_with_another_secret_does_not_verify():
    forger = Key(OLD.key_id, OLD.algorithm, b"f" * 32)
    verdict = KeyRing({OLD.key_id: OLD}).verify(*RECORD[:2], signed(forger), RECORD[3])
    assert "does not verify" in verdict.refused


def test_unsigned_input_passes_unless_required():
    assert KeyRing({OLD.key_id: OLD}).verify(*RECORD[:2], [(TYPE_HEADER, b"claim")], RECORD[3]).refused is None
    refused = KeyRing({OLD.key_id: OLD}, require=True).verify(*RECORD[:2], None, RECORD[3]).refused
    assert refused == "unsigned input (GONGJI_REQUIRE_SIGNED_INPUT is on)"


@pytest.mark.parametrize("value", [b"kid=k2025", b"kid=k2025;alg=hmac-sha256;mac=XYZ", b"\xff\xfe", b""])
def test_a_malformed_signature_header_is_refused(value):
    verdict = KeyRing({OLD.key_id: OLD}).verify(*RECORD[:2], [(SIGNATURE_HEADER, value)], RECORD[3])
    assert verdict.refused.startswith("malformed")


def test_two_signature_headers_are_refused():
    headers = signed(OLD) + [signed(NEW)[1]]
    assert "more than one" in KeyRing({OLD.key_id: OLD, NEW.key_id: NEW}).verify(*RECORD[:2], headers,
                                                                                  RECORD[3]).refused


def test_rotation_old_and_new_key_ids_both_verify_while_both_are_listed(tmp_path):
    ring = load_keys(keys_file(tmp_path, {"k2025": {}, "k2026": {"algorithm": "hmac-sm3"}}), require=True)
    for key_id in ("k2025", "k2026"):
        producer = ring.keys[key_id]
        assert ring.verify(*RECORD[:2], signed(producer), RECORD[3]).key.key_id == key_id
    # The old key removed from the file: what it signs is refused, the new one's still verifies.
    retired = load_keys(keys_file(tmp_path, {"k2026": {"algorithm": "hmac-sm3"}}))
    assert retired.verify(*RECORD[:2], signed(ring.keys["k2025"]), RECORD[3]).refused == (
        "signed with unknown key id 'k2025'")
    assert retired.verify(*RECORD[:2], signed(ring.keys["k2026"]), RECORD[3]).key is not None


# ---------------------------------------------------------------- the keys file

def keys_file(folder: Path, keys: dict[str, dict], secret: bytes = b"0123456789abcdef0123456789abcdef\n") -> Path:
    lines = []
    for key_id, fields in keys.items():
        (folder / f"{key_id}.key").write_bytes(secret)
        lines.append(f'[keys."{key_id}"]')
        lines.append(f'secret_file = "{key_id}.key"')
        for name, value in fields.items():
            lines.append(f"{name} = {value!r}".replace("'", '"'))
    path = folder / "keys.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_keys_file_gives_each_key_its_algorithm_secret_and_regions(tmp_path):
    ring = load_keys(keys_file(tmp_path, {"erenhot": {"algorithm": "hmac-sm3", "regions": ["152501"]},
                                          "hub": {}}))
    assert ring.keys["erenhot"].algorithm == "hmac-sm3" and ring.keys["erenhot"].regions == {"152501"}
    assert ring.keys["hub"].algorithm == "hmac-sha256" and ring.keys["hub"].regions is None
    assert ring.keys["hub"].secret == b"0123456789abcdef0123456789abcdef"  # the trailing newline dropped


def test_a_key_never_shows_its_secret(tmp_path):
    ring = load_keys(keys_file(tmp_path, {"hub": {}}))
    assert "0123456789abcdef" not in repr(ring) and "0123456789abcdef" not in str(ring.keys["hub"])


@pytest.mark.parametrize("keys, secret, message", [
    ({"hub": {"algorithm": "hmac-md5"}}, None, "keys.hub.algorithm: 'hmac-md5' is not one of"),
    ({"hub": {"regions": ["15250"]}}, None, "keys.hub.regions: a list of six-digit region codes"),
    ({"hub": {"regions": []}}, None, "keys.hub.regions"),
    ({"hub": {"region": ["152501"]}}, None, "keys.hub: unknown field(s) region"),
    ({"hub": {}}, b"short\n", "holds 5 bytes; a secret needs at least 32"),
    ({"h b": {}}, None, "a key id is 1 to 64 of"),
])
def test_a_bad_keys_file_names_the_file_and_the_field(tmp_path, keys, secret, message):
    path = keys_file(tmp_path, keys, **({"secret": secret} if secret else {}))
    with pytest.raises(KeyFileError) as error:
        load_keys(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_missing_keys_file_or_secret_file_is_one_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="GONGJI_INPUT_KEYS_FILE .*No such file"):
        load_keys(tmp_path / "absent.toml")
    path = keys_file(tmp_path, {"hub": {}})
    os.unlink(tmp_path / "hub.key")
    with pytest.raises(KeyFileError, match="keys.hub.secret_file: cannot read"):
        load_keys(path)


def test_settings_refuse_a_requirement_without_keys():
    with pytest.raises(ValueError, match="need input_keys_file"):
        Settings(require_signed_input=True)
    with pytest.raises(ValueError, match="need input_keys_file"):
        Settings(input_signing_key="hub")


def test_the_producer_signs_with_the_configured_key_only(tmp_path):
    path = keys_file(tmp_path, {"hub": {}, "erenhot": {"regions": ["152501"]}})
    assert signing.signer(Settings(input_keys_file=path)) is None
    assert signing.signer(Settings(input_keys_file=path, input_signing_key="erenhot")).key_id == "erenhot"
    with pytest.raises(KeyFileError, match="'nobody' is not in"):
        signing.signer(Settings(input_keys_file=path, input_signing_key="nobody"))
    ring = signing.key_ring(Settings(input_keys_file=path, require_signed_input=True))
    assert ring.require and set(ring.keys) == {"hub", "erenhot"}
    assert signing.key_ring(Settings()) is None


def test_the_signer_takes_the_keys_file_as_the_local_stack_gives_it(tmp_path):
    # gongji.local.state puts the stack's files into settings with model_copy (no validation): a str,
    # on which `gongji publish` failed with AttributeError: 'str' object has no attribute 'read_text'
    path = keys_file(tmp_path, {"local": {}})
    settings = Settings().model_copy(update={"input_keys_file": str(path), "input_signing_key": "local"})
    assert signing.signer(settings).key_id == "local"
    assert set(signing.key_ring(settings).keys) == {"local"}
