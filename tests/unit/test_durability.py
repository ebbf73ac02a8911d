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


def test_the_local_stack_runs_redis_as_compose_does(tmp_path):
    """Append-only file on, flushed every second, no snapshots: what docker-compose.yml runs."""
    from pathlib import Path

    import yaml

    from gongji.local.servers import Server

    argv = Server("redis", "valkey-server", 6379, tmp_path / "log").argv(tmp_path)
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    production = compose["services"]["redis"]["command"]
    for flag in ("--appendonly", "--appendfsync"):
        assert argv[argv.index(flag) + 1] == production[production.index(flag) + 1]
    assert argv[argv.index("--appendonly") + 1] == "yes"
