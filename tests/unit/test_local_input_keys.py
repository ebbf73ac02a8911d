"""The local stack's input key (gongji.local.input_keys): generated private, and the settings the
stack gives every process on it sign and require signed input."""

from __future__ import annotations

import stat

import pytest

from gongji.common.signing import key_ring, signer
from gongji.local import input_keys
from gongji.local.stack import stack_settings
from gongji.settings import Settings

pytestmark = pytest.mark.unit

STATE = {"kafka_bootstrap_servers": "127.0.0.1:1", "redis_url": "redis://127.0.0.1:2/0", "database_url": None}


def test_the_stack_key_is_private_and_new_each_time(tmp_path):
    path = input_keys.generate(tmp_path)
    secret = tmp_path / "input-local.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(secret.stat().st_mode) == 0o600
    first = secret.read_bytes()
    input_keys.generate(tmp_path)
    assert secret.read_bytes() != first and len(first.strip()) >= 32


def test_processes_on_the_stack_sign_and_require_signed_input(tmp_path):
    path = input_keys.generate(tmp_path)
    settings = Settings(**stack_settings({**STATE, "input_keys_file": str(path)}))
    assert settings.require_signed_input and settings.input_keys_file == path
    key, ring = signer(settings), key_ring(settings)
    assert key.key_id == "local" and key.regions is None and ring.require
    headers = key.headers("claims", b"P1", "claim", b"value")
    assert ring.verify("claims", b"P1", headers, b"value").key == key
    assert ring.verify("claims", b"P1", None, b"value").refused  # unsigned: refused on the stack
    # The child processes get it through their environment, the secret never (it stays in its file).
    env = settings.to_env()
    assert env["GONGJI_REQUIRE_SIGNED_INPUT"] == "true" and env["GONGJI_INPUT_SIGNING_KEY"] == "local"
    assert key.secret.decode() not in "".join(env.values())


def test_a_state_without_a_key_changes_nothing():
    settings = Settings(**stack_settings(STATE))
    assert not settings.require_signed_input and settings.input_keys_file is None
