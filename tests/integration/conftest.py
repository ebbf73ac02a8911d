"""Integration fixtures: every store implementation, on real Redis-protocol servers: the stack's
single server, and a Redis Cluster of three primaries started from the same server binary."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time

import pytest
import redis

from gongji.local.processes import die_with_parent
from gongji.local.servers import redis_server_binary

from gongji.common.redis import connect
from tests.integration.support import acl_args, admin_credentials, service_credentials, settings_for
from gongji.settlement.redis_store import RedisStore
from gongji.settlement.memory_store import MemoryStore


def _cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too: a cluster node refuses a
    port above 55535, and the kernel's ephemeral ports (what free_port gets) often are."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 45000)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def _cluster_node(workdir, acl: list[str], credentials: dict, attempts: int = 3):
    """One cluster-enabled server on a free port (`acl`: its --aclfile, `credentials` the admin's);
    a port taken meanwhile is retried on another."""
    for _ in range(attempts):
        port = _cluster_port()
        log = workdir / f"node-{port}.log"
        process = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf", "--save", "", "--appendonly", "yes",
             "--appenddirname", f"aof-{port}",
             "--dir", str(workdir), "--logfile", str(log), *acl],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent(os.getpid()))
        node = redis.Redis(host="127.0.0.1", port=port, **credentials)
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            try:
                node.ping()
                return process, port, node
            except redis.ConnectionError:
                time.sleep(0.05)
        process.kill()
        process.wait(5)
    raise AssertionError(f"a cluster node did not start: {log.read_text()[-500:] if log.exists() else 'no log'}")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, stack):
    """A Redis Cluster of three primaries on loopback, slots split evenly, every node with the local
    stack's ACL file (its users and passwords); yields one node's URL."""
    workdir = tmp_path_factory.mktemp("cluster")
    acl, credentials = acl_args(stack, workdir / "users.acl"), admin_credentials(stack)
    started = []
    try:
        for _ in range(3):
            started.append(_cluster_node(workdir, acl, credentials))
        processes, ports, nodes = zip(*started)
        ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
        for node, (first, last) in zip(nodes, ranges):
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        deadline = time.monotonic() + 30
        while not all(b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO") for node in nodes):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            process.wait(10)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def store(request, uniq, stack):
    """Each SettlementStore in turn: the in-memory one replay uses, and the Redis one the service
    uses, on one server and on a Redis Cluster (the scripts' keys share a {psn_no} slot), as the
    settlement service's Redis user."""
    if request.param == "memory":
        yield MemoryStore()
        return
    user = service_credentials(stack, "settlement")
    if request.param == "redis":
        client = connect(stack.redis_url, **user)
    else:
        client = connect(request.getfixturevalue("redis_cluster"), cluster=True, **user)
    yield RedisStore(client, prefix=uniq)
    await client.aclose()


@pytest.fixture
def ledger_settings(stack, uniq):
    """Settings isolated for this test with the stack's PostgreSQL: the ledger's group and schema."""
    if not stack.database_url:
        pytest.fail("the stack fixture has no PostgreSQL (set GONGJI_DATABASE_URL with the other servers)")
    return settings_for(stack, uniq, database_url=stack.database_url, ledger_group=f"{uniq}-ledger",
                        ledger_schema=uniq)
