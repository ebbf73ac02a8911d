"""Failures an operator can act on: the backoff while a server is away (bounded, jittered), the
servers named with their address and setting, the log format, the stack's folder found from any
directory of the checkout, and the ledger's commands on GONGJI_DATABASE_URL alone."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import socket

import pytest

from gongji.common import reachable
from gongji.common.observe import PortInUse, configure_logging, serve, Metrics
from gongji.local import state
from gongji.settings import Settings

pytestmark = pytest.mark.unit


# --- backoff -----------------------------------------------------------------------------------

def _delays(seed: int, tries: int = 24, initial: float = 0.5, maximum: float = 30.0) -> list[float]:
    random.seed(seed)  # tenacity draws its jitter from the random module
    wait = reachable.backoff(initial, maximum)
    return [reachable.delay(wait, attempt) for attempt in range(1, tries + 1)]


def test_backoff_grows_exponentially_within_half_and_all_of_its_step_and_never_past_the_cap():
    for attempt, waited in enumerate(_delays(seed=20261201), start=1):
        step = min(30.0, 0.5 * 2 ** (attempt - 1))
        assert step / 2 <= waited <= step <= 30.0, (attempt, waited)


def test_backoff_is_jittered_at_the_cap_too_and_reproducible_from_its_seed():
    delays = _delays(seed=7)
    at_cap = delays[10:]  # 0.5 × 2¹⁰ is far past 30 s
    assert len(set(at_cap)) == len(at_cap), "every client would come back in the same instant"
    assert delays == _delays(seed=7) and delays != _delays(seed=8)


# --- what names a server ----------------------------------------------------------------------

def test_each_server_is_named_by_its_address_and_setting_without_a_password():
    redis = reachable.redis("redis://gongji-clearing:s3cret@cache.internal:6380/0")
    assert (redis.named(), redis.setting, redis.endpoints) == (
        "Redis at redis://gongji-clearing:***@cache.internal:6380/0", "GONGJI_REDIS_URL", (("cache.internal", 6380),))
    pg = reachable.postgresql("postgresql://ledger:pw@db-a,db-b:5433/gongji?sslmode=verify-full")
    assert pg.setting == "GONGJI_DATABASE_URL" and "pw" not in pg.address
    assert pg.endpoints == (("db-a", 5432), ("db-b", 5433))  # libpq: the port goes with the host before it
    kafka = reachable.kafka("k1:9092,k2:9093")
    assert kafka.endpoints == (("k1", 9092), ("k2", 9093)) and kafka.setting == "GONGJI_KAFKA_BOOTSTRAP_SERVERS"


def test_each_service_waits_for_the_servers_it_needs_and_no_other():
    settings = Settings(kafka_bootstrap_servers="k:9092", redis_url="redis://r:6379/0", database_url="postgresql://d/g")
    kinds = {service: [server.kind for server in reachable.needed(settings, service)]
             for service in ("settlement", "clearing", "ledger", "fraud", "dashboard")}
    assert kinds == {"settlement": ["Kafka", "Redis"], "clearing": ["Kafka", "Redis"], "ledger": ["PostgreSQL"],
                     "fraud": ["Kafka"], "dashboard": ["Kafka"]}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Said(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []
        self.first = asyncio.Event()

    def emit(self, record):
        self.lines.append(record.getMessage())
        self.first.set()


async def test_a_server_that_is_away_is_told_once_then_waited_for_until_it_answers():
    port = _closed_port()
    said = _Said()
    logging.getLogger("gongji.reachable").addHandler(said)
    server = None
    try:
        waiting = asyncio.ensure_future(reachable.wait_until_reachable(
            "clearing", [reachable.redis(f"redis://u:pw@127.0.0.1:{port}/0")], initial=0.02, maximum=0.1, timeout=1))
        await asyncio.wait_for(said.first.wait(), 10)
        server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", port)
        await asyncio.wait_for(waiting, 10)
    finally:
        logging.getLogger("gongji.reachable").removeHandler(said)
        if server is not None:
            server.close()
    told = [line for line in said.lines if "does not answer" in line]
    assert told == [f"clearing: Redis at redis://u:***@127.0.0.1:{port}/0 does not answer (Connection refused); is "
                    "it running, and is GONGJI_REDIS_URL right?; waiting for it, trying again with backoff up to 0.1 s"]
    assert said.lines[-1].startswith(f"clearing: Redis at redis://u:***@127.0.0.1:{port}/0 answers now, after ")
    assert all("Traceback" not in line for line in said.lines)


async def test_a_check_runs_once_as_soon_as_its_server_answers_though_another_is_still_away():
    """A wrong Redis password must stop a service while Kafka is away, not after Kafka answers."""
    away = _closed_port()
    redis = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    calls = []

    async def refuse() -> None:
        calls.append(1)
        raise PermissionError("Redis refused the credentials")  # the real check exits (service_client)

    try:
        port = redis.sockets[0].getsockname()[1]
        with pytest.raises(PermissionError, match="refused the credentials"):
            await asyncio.wait_for(reachable.wait_until_reachable(
                "clearing", [reachable.kafka(f"127.0.0.1:{away}"), reachable.redis(f"redis://127.0.0.1:{port}/0")],
                initial=0.02, maximum=0.1, timeout=1, checks={"Redis": refuse}), 10)
    finally:
        redis.close()
    assert calls == [1]


async def test_a_passing_check_runs_once_however_long_the_wait():
    away, calls = _closed_port(), []
    redis = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)

    async def fine() -> None:
        calls.append(1)
        if len(calls) == 1:
            kafka_opened.set()

    kafka_opened, kafka = asyncio.Event(), None
    try:
        port = redis.sockets[0].getsockname()[1]
        waiting = asyncio.ensure_future(reachable.wait_until_reachable(
            "clearing", [reachable.kafka(f"127.0.0.1:{away}"), reachable.redis(f"redis://127.0.0.1:{port}/0")],
            initial=0.02, maximum=0.05, timeout=1, checks={"Redis": fine}))
        await asyncio.wait_for(kafka_opened.wait(), 10)
        await asyncio.sleep(0)  # the wait is still going: Kafka is away
        assert not waiting.done()
        kafka = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", away)
        await asyncio.wait_for(waiting, 10)
    finally:
        redis.close()
        if kafka is not None:
            kafka.close()
    assert calls == [1]


def test_a_metrics_port_in_use_is_one_line_naming_the_address_and_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"ledger metrics: cannot listen on 127.0.0.1:{port} \(Address already in "
                                            r"use\).*set GONGJI_METRICS_PORT to a free port"):
            serve(Metrics("ledger"), "127.0.0.1", port)


# --- log format and level ---------------------------------------------------------------------

def _logged(log_format: str | None, level: str = "INFO", tty: bool = False) -> str:
    stream = io.StringIO()
    stream.isatty = lambda: tty
    configure_logging(log_format, level, stream=stream)
    try:
        logging.getLogger("gongji.test").info("settled %d claims in %s", 3, "二连浩特")
        logging.getLogger("yoyo.migrations").info(" - applying step 0")
        logging.getLogger("aiokafka").error('Unable connect to "%s:%s": %s', "127.0.0.1", 1, "refused")
        logging.getLogger("gongji.test").warning("a warning")
    finally:
        configure_logging("json")
    return stream.getvalue()


def test_json_log_lines_parse_and_the_libraries_chatter_is_held_back_at_info():
    lines = [json.loads(line) for line in _logged("json").splitlines()]
    assert [(line["level"], line["logger"], line["msg"]) for line in lines] == [
        ("INFO", "gongji.test", "settled 3 claims in 二连浩特"), ("WARNING", "gongji.test", "a warning")]


def test_text_log_lines_for_a_person_and_debug_lets_everything_through():
    text = _logged("text", "DEBUG").splitlines()
    assert [line.split(" ", 2)[2] for line in text] == [
        "INFO gongji.test: settled 3 claims in 二连浩特", "INFO yoyo.migrations:  - applying step 0",
        'ERROR aiokafka: Unable connect to "127.0.0.1:1": refused', "WARNING gongji.test: a warning"]


def test_unset_format_is_text_on_a_terminal_and_json_elsewhere():
    assert _logged(None, tty=True).splitlines()[0].endswith("INFO gongji.test: settled 3 claims in 二连浩特")
    assert json.loads(_logged(None, tty=False).splitlines()[0])["msg"] == "settled 3 claims in 二连浩特"


def test_log_settings_come_from_the_environment_in_any_case(monkeypatch):
    from gongji.settings import LogSettings

    monkeypatch.setenv("GONGJI_LOG_FORMAT", "JSON")
    monkeypatch.setenv("GONGJI_LOG_LEVEL", "warning")
    assert (LogSettings().log_format, LogSettings().log_level) == ("json", "WARNING")
    assert Settings().to_env()["GONGJI_LOG_LEVEL"] == "WARNING"  # a child process logs alike


# --- the stack's folder -----------------------------------------------------------------------

@pytest.fixture
def checkout(tmp_path):
    top = tmp_path / "gongji-checkout"
    (top / "services" / "gongji" / "local").mkdir(parents=True)
    (top / "pyproject.toml").write_text('[project]\nname = "gongji"\n')
    return top


def test_the_stacks_folder_is_found_from_a_subdirectory_of_the_checkout(checkout):
    (checkout / ".gongji").mkdir()
    (checkout / ".gongji" / state.STATE_FILE).write_text("{}")
    found, looked = state.find_state_dir(checkout / "services" / "gongji" / "local")
    assert found == checkout / ".gongji"
    assert looked == [checkout / "services" / "gongji" / "local" / ".gongji", checkout / "services" / "gongji" / ".gongji",
                      checkout / "services" / ".gongji", checkout / ".gongji"]


def test_without_a_running_stack_the_folder_is_the_checkouts_top_and_the_search_stops_there(checkout):
    found, looked = state.find_state_dir(checkout / "services")
    assert found == checkout / ".gongji" and looked[-1] == checkout / ".gongji"


def test_gongji_state_dir_is_taken_as_given(checkout, tmp_path):
    assert state.find_state_dir(checkout, given=str(tmp_path / "elsewhere")) == (
        tmp_path / "elsewhere", [tmp_path / "elsewhere"])


def test_the_no_stack_message_says_where_it_looked(checkout, monkeypatch):
    found, looked = state.find_state_dir(checkout / "services")
    monkeypatch.setattr(state, "STATE_DIR", found)
    monkeypatch.setattr(state, "LOOKED", looked)
    with pytest.raises(SystemExit) as stopped:
        state.read_state()
    assert f"looked for stack.json in {checkout / 'services' / '.gongji'}, {checkout / '.gongji'})" in str(stopped.value)


def test_state_and_stack_name_the_same_file():
    from gongji.local import stack

    assert state.STATE_FILE == stack.STATE_FILE


# --- the ledger's commands on the database alone ----------------------------------------------

def test_the_ledgers_commands_need_only_the_database(monkeypatch, tmp_path):
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)  # no stack there
    alone = Settings(database_url="postgresql://ledger@db/gongji")
    assert state.resolve_settings(alone, database_only=True).database_url == "postgresql://ledger@db/gongji"
    with pytest.raises(SystemExit, match="set both GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL"):
        state.resolve_settings(alone)  # a service still needs its broker
