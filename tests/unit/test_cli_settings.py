"""Where the servers come from: the environment when it names any, else every one from the local
stack's state file; never a mix (production Kafka with the stack's scratch database)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gongji.local import state
from gongji.settings import Settings

pytestmark = pytest.mark.unit

STATE = {"kafka_bootstrap_servers": "127.0.0.1:1", "redis_url": "redis://127.0.0.1:2/0",
         "database_url": "postgresql://postgres@127.0.0.1:3/postgres", "servers": {}}


@pytest.fixture
def stack_state(tmp_path, monkeypatch):
    (tmp_path / "stack.json").write_text(json.dumps(STATE))
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)


def test_no_servers_configured_means_the_whole_local_stack(stack_state):
    settings = state.resolve_settings(Settings())
    assert (settings.kafka_bootstrap_servers, settings.redis_url, settings.database_url) == (
        STATE["kafka_bootstrap_servers"], STATE["redis_url"], STATE["database_url"])


def test_configured_servers_never_borrow_the_stacks_database(stack_state):
    settings = state.resolve_settings(Settings(kafka_bootstrap_servers="kafka.prod:9092", redis_url="redis://redis.prod/0"))
    assert settings.kafka_bootstrap_servers == "kafka.prod:9092" and settings.database_url is None


def test_half_configured_servers_stop_with_a_message(stack_state):
    with pytest.raises(SystemExit, match="set both GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL"):
        state.resolve_settings(Settings(database_url="postgresql://prod/gongji"))


def test_the_stacks_services_use_the_stacks_servers_whatever_the_shell_says(stack_state):
    settings = state.local_stack_settings(Settings(database_url="postgresql://prod/gongji"))
    assert settings.database_url == STATE["database_url"]


def test_path_settings_read_from_the_state_file_are_paths(tmp_path, monkeypatch):
    """stack.json holds paths as text; the settings built from it are validated, so a path setting
    is a Path (a str there crashed `signing.load_keys` on `gongji stack up`, issue 11)."""
    files = {"input_keys_file": str(tmp_path / "input-keys.toml"), "gateway_callers_file": str(tmp_path / "callers.toml")}
    (tmp_path / "stack.json").write_text(json.dumps({**STATE, **files}))
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    settings = state.local_stack_settings(Settings())
    assert settings.input_keys_file == Path(files["input_keys_file"])
    assert isinstance(settings.input_keys_file, Path) and isinstance(settings.gateway_callers_file, Path)
    assert settings.require_signed_input and settings.input_signing_key == "local"
    # validated as configured values are: a wrong value in the state file is refused, not carried
    (tmp_path / "stack.json").write_text(json.dumps({**STATE, **files, "redis_url": 5}))
    with pytest.raises(ValueError, match="redis_url"):
        state.local_stack_settings(Settings())



SEEN: dict = {}


def _remember(args, resolve) -> None:
    """A command handler that keeps the settings it was given."""
    SEEN[args.command] = resolve()


def test_a_service_run_on_the_stack_connects_with_its_own_certificate(tmp_path, monkeypatch):
    """`gongji run ledger` on a `gongji stack up` with TLS: the ledger's certificate; any other
    command: the tools'."""
    from gongji import cli

    (tmp_path / "stack.json").write_text(json.dumps({**STATE, "kafka_tls": str(tmp_path / "tls")}))
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    for name in [name for name in os.environ if name.startswith("GONGJI_")]:
        monkeypatch.delenv(name)
    SEEN.clear()
    monkeypatch.setitem(cli.COMMANDS, "run", f"{__name__}:_remember")
    monkeypatch.setitem(cli.COMMANDS, "topics", f"{__name__}:_remember")
    cli.main(["run", "ledger"])
    cli.main(["topics", "describe"])
    assert seen_settings("run") == ("SSL", str(tmp_path / "tls" / "ca.pem"), str(tmp_path / "tls" / "gongji-ledger.pem"))
    assert seen_settings("topics")[2] == str(tmp_path / "tls" / "gongji-tools.pem")


def seen_settings(command: str) -> tuple[str, str, str]:
    settings = SEEN[command]
    return settings.kafka_security_protocol, str(settings.kafka_ssl_cafile), str(settings.kafka_ssl_certfile)
