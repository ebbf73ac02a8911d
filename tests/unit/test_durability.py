"""What each GONGJI_REDIS_DURABILITY mode waits for, and which replies are short of it."""

import pytest

from gongji.common.redis import Durability, NotDurable


class Recorder:
    def __init__(self):
        self.commands = []

    def execute_command(self, *args):
        self.commands.append(args)


@pytest.mark.parametrize("mode, command", [
    ("aof", ("WAITAOF", 1, 0, 5000)),
    ("aof-replicas", ("WAITAOF", 0, 2, 5000)),
    ("aof-all", ("WAITAOF", 1, 2, 5000)),
    ("replicas", ("WAIT", 2, 5000)),
    ("none", None),
])
def test_each_mode_waits_for_its_copies(mode, command):
    pipe = Recorder()
    assert Durability(mode, replicas=2).queue(pipe) == (command is not None)
    assert pipe.commands == ([command] if command else [])


@pytest.mark.parametrize("mode, reply, enough", [
    ("aof", [1, 0], True), ("aof", [0, 0], False),
    ("aof-replicas", [0, 2], True), ("aof-replicas", [1, 1], False),
    ("aof-all", [1, 2], True), ("aof-all", [1, 1], False), ("aof-all", [0, 2], False),
    ("replicas", 2, True), ("replicas", 3, True), ("replicas", 1, False),
])
def test_a_short_wait_is_an_outage(mode, reply, enough):
    durability = Durability(mode, replicas=2)
    if enough:
        durability.verify(reply)
    else:
        with pytest.raises(NotDurable):
            durability.verify(reply)


def test_the_local_stack_runs_redis_with_compose_s_append_only_file_fsynced_as_configured(tmp_path, monkeypatch):
    """Append-only file on, no snapshots, as docker-compose.yml runs it; fsynced on every event-loop
    turn by default (a WAITAOF returns at once: issue 12's latency), every second as compose does
    when GONGJI_LOCAL_REDIS_APPENDFSYNC=everysec. valkey-server takes the last of a repeated flag."""
    from pathlib import Path

    import yaml

    from gongji.local.servers import Server

    def last(argv, flag):
        return argv[len(argv) - argv[::-1].index(flag)]

    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    production = compose["services"]["redis"]["command"]
    monkeypatch.delenv("GONGJI_LOCAL_REDIS_APPENDFSYNC", raising=False)
    argv = Server("redis", "valkey-server", 6379, tmp_path / "log").argv(tmp_path)
    assert last(argv, "--appendonly") == production[production.index("--appendonly") + 1] == "yes"
    assert last(argv, "--save") == "" and last(argv, "--appendfsync") == "always"
    monkeypatch.setenv("GONGJI_LOCAL_REDIS_APPENDFSYNC", "everysec")
    argv = Server("redis", "valkey-server", 6379, tmp_path / "log").argv(tmp_path)
    assert last(argv, "--appendfsync") == production[production.index("--appendfsync") + 1] == "everysec"
