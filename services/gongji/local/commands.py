"""`gongji stack up|down`, `gongji demo` and `gongji bench`: the one-machine commands (handlers of
gongji.cli's table). They start their own servers or use the configured ones: no `resolve()`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings


def stack(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    from gongji.local.stack import stack_down, stack_up
    from gongji.local.state import STATE_DIR

    if args.action == "up":
        state = stack_up(STATE_DIR)
        if not state["already_running"]:
            from gongji.local.launch import start_stack_services

            state["dashboard_url"] = start_stack_services(args.policies)
        print(("already running: " if state["already_running"] else "started: ")
              + f"GONGJI_KAFKA_BOOTSTRAP_SERVERS={state['kafka_bootstrap_servers']} "
              f"GONGJI_REDIS_URL={state['redis_url']} GONGJI_DATABASE_URL={state.get('database_url')}"
              + (f"\ndashboard: {state['dashboard_url']}" if state.get("dashboard_url") else "")
              + (f" ({state['dashboard_login']})" if state.get("dashboard_login") else ""))
    else:
        print("stopped" if stack_down(STATE_DIR) else "no local stack was running")


def demo(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    from gongji.local.demo import run_demo

    asyncio.run(run_demo(rate=args.rate, seconds=args.seconds, persons=args.persons, policy_dir=args.policies))


def bench(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    from gongji.local.bench import run_bench

    asyncio.run(run_bench(claims=args.claims, persons=args.persons, policy_dir=args.policies, rate=args.rate,
                          workers=args.workers, downstream=args.downstream))
