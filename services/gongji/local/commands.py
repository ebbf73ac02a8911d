"""`gongji stack up|down`, `gongji demo` and `gongji bench`: the one-machine commands (handlers of
gongji.cli's table). They start their own servers or use the configured ones: no `resolve()`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings


def stack(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    from gongji.local.stack import stack_down, stack_up
    from gongji.local.state import STATE_DIR

    if args.action == "up":
        from gongji.settings import Settings

        state = stack_up(STATE_DIR, key_prefix=Settings().key_prefix)
        if not state["already_running"]:
            from gongji.local.errors import StackError
            from gongji.local.launch import start_stack_services

            try:
                state["dashboard_url"] = start_stack_services(args.policies)
            except StackError as error:  # a service died on start: the stack is stopped, one line says why
                sys.exit(f"gongji: stack up: {error}; the stack is stopped")
        print(("already running: " if state["already_running"] else "started: ") + stack_variables(state)
              + (f"\ndashboard: {state['dashboard_url']}" if state.get("dashboard_url") else "")
              + (f" ({state['dashboard_login']})" if state.get("dashboard_login") else "")
              + gateway_line(state))
    else:
        print("stopped" if stack_down(STATE_DIR) else "no local stack was running")


def gateway_line(state: dict) -> str:
    """Where the stack's gateway listens and who may call it, as environment lines for `gongji
    call` or a HIS of one's own (README, "Gateway")."""
    from gongji.local.gateway_callers import variables
    from gongji.local.state import read_state

    state = {**read_state(), **state} if not state.get("gateway_url") else state  # the URL: recorded when the services started
    return f"\ngateway: {variables(state)}" if state.get("gateway_url") else ""


def stack_variables(state: dict) -> str:
    """The environment that puts a shell on the stack as its operator: addresses, user names and
    the files holding the passwords (never a password)."""
    from gongji.local import input_keys
    from gongji.local.credentials import OPERATOR
    from gongji.local.stack import stack_settings

    operator = state.get("credentials", {}).get(OPERATOR, {})
    kafka = {name: value for name, value in stack_settings(state).items() if name.startswith("kafka_")
             and not name.endswith("_ms")}  # where, and TLS with the tools' certificate
    variables = {**kafka, "redis_url": state["redis_url"],
                 **{name: operator.get(name) for name in ("redis_username", "redis_password_file", "database_url",
                                                          "database_password_file")}}
    if state.get("input_keys_file"):  # its settlement requires signed input: a producer of yours signs with this key
        variables |= {"input_keys_file": state["input_keys_file"], "input_signing_key": input_keys.KEY_ID}
    return " ".join(f"GONGJI_{name.upper()}={value}" for name, value in variables.items() if value)


def demo(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    from gongji.local.demo import run_demo

    asyncio.run(run_demo(rate=args.rate, seconds=args.seconds, persons=args.persons, policy_dir=args.policies))


def bench(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    if args.gateway:
        from gongji.local.gateway_bench import run_gateway_bench

        asyncio.run(run_gateway_bench(requests=args.gateway_requests, persons=args.persons, rate=args.gateway_rate,
                                      concurrency=args.gateway_concurrency, policy_dir=args.policies,
                                      workers=args.workers))
        return
    from gongji.local.bench import run_bench

    asyncio.run(run_bench(claims=args.claims, persons=args.persons, policy_dir=args.policies, rate=args.rate,
                          workers=args.workers, downstream=args.downstream))
