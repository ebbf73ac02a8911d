"""The command table: every command the parser offers runs the handler named for it, each service's
`gongji run` its own context's, and nothing of a handler is imported before its command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gongji import cli
from gongji.ledger.commands import PREFIXES
from gongji.services import SERVICES, handler

pytestmark = pytest.mark.unit


def subcommands(parser) -> dict:
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return action.choices


def test_every_command_has_a_handler_and_every_handler_a_command():
    assert set(subcommands(cli.parser())) == set(cli.COMMANDS)
    for command, path in cli.COMMANDS.items():
        assert callable(handler(path)), command


def test_each_service_runs_its_own_contexts_handler():
    """The old if/elif chain ran clearing for any `run` it did not name: each name maps to its own."""
    assert list(subcommands(cli.parser())["run"]._actions[1].choices) == list(SERVICES)
    for service, path in SERVICES.items():
        run = handler(path)
        assert (run.__module__, run.__name__) == (f"gongji.{service}.commands", "run")


def test_ledger_balances_by_offers_the_ledgers_groupings():
    assert cli.BALANCES_BY == tuple(PREFIXES)


def test_building_the_parser_imports_no_handler_and_no_settings():
    """`gongji --help` stays quick: the handlers, pydantic and the clients load when a command runs."""
    probe = ("import sys; from gongji import cli; cli.parser(); "
             "print(' '.join(m for m in sys.modules if m.startswith(('gongji.', 'pydantic', 'aiokafka', 'redis'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(loaded) == ["gongji.cli", "gongji.services"], loaded


def test_python_dash_m_gongji_is_the_command():
    result = subprocess.run([sys.executable, "-m", "gongji", "run", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "gongji run: error: argument service: invalid choice" in result.stderr
