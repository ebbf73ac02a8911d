"""Integration fixtures: every store implementation, on real Redis-protocol servers: the stack's
single server, and a Redis Cluster of three primaries started from the same server binary."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import redis

from gongji.common.stack import die_with_parent, free_port, redis_server_binary

from gongji.common.redis import connect
from gongji.settlement.redis_store import RedisStore
from gongji.settlement.store import MemoryStore


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A Redis Cluster of three primaries on loopback, slots split evenly; yields one node's URL."""
    workdir = tmp_path_factory.mktemp("cluster")
    ports = [free_port() for _ in range(3)]
    processes = [subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", f"nodes-{port}.conf", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent(os.getpid()))
        for port in ports]
    try:
        nodes = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
        deadline = time.monotonic() + 20
        for node in nodes:
            while True:
                try:
                    node.ping()
                    break
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, "a cluster node did not start"
                    time.sleep(0.05)
        ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
        for node, (first, last) in zip(nodes, ranges):
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        while not all(b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO") for node in nodes):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def store(request, uniq, stack):
    """Each SettlementStore in turn: the in-memory one replay uses, and the Redis one the service
    uses, on one server and on a Redis Cluster (the scripts' keys share a {psn_no} slot)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "redis":
        client = connect(stack.redis_url)
    else:
        client = connect(request.getfixturevalue("redis_cluster"), cluster=True)
    yield RedisStore(client, prefix=uniq)
    await client.aclose()
