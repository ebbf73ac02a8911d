"""One exception root per bounded context: every exception settlement defines is a SettlementError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import gongji.settlement
from gongji.settlement.domain import SettlementError
from gongji.settlement.policy import PolicyError

pytestmark = pytest.mark.unit


def defined_exceptions() -> list[type]:
    found = []
    for module in pkgutil.iter_modules(gongji.settlement.__path__, "gongji.settlement."):
        loaded = importlib.import_module(module.name)
        found += [value for value in vars(loaded).values()
                  if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.name]
    return found


def test_every_settlement_exception_has_the_one_root():
    exceptions = defined_exceptions()
    names = {error.__name__ for error in exceptions}
    assert {"SettlementError", "PolicyError", "RebuildError", "StoreContention", "StateLost"} <= names
    assert [error.__name__ for error in exceptions if not issubclass(error, SettlementError)] == []


def test_a_policy_error_is_still_a_value_error():
    """What caught a bad policy file as a ValueError still does."""
    assert issubclass(PolicyError, ValueError)
