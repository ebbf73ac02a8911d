"""The poison-message policy (gongji.common.poison) on a fake handler: what it hands on, in what
order, what it dead-letters and when it calls a failure an outage."""

from __future__ import annotations

import decimal
import random

import psycopg
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from gongji.common.poison import Backoff, Outage, Policy, describe

pytestmark = pytest.mark.unit


class Handler:
    """Handles ints; the poisoned ones raise `error` wherever they are in a batch. Remembers each
    batch it completed and how many times it was called."""

    def __init__(self, poisoned=(), error=KeyError("bug")):
        self.poisoned = set(poisoned)
        self.error = error
        self.done: list[int] = []
        self.calls = 0

    async def __call__(self, items):
        self.calls += 1
        if self.poisoned & set(items):
            raise self.error
        self.done.extend(items)


def policy(dead: list, down: list | None = None, **options) -> Policy:
    async def probe():
        if down:
            raise ConnectionRefusedError(down[0])

    async def letter(item, reason):
        dead.append((item, reason))

    return Policy("ledger", probe, letter, backoff=Backoff(0.0, 0.0), **options)


ERRORS = [decimal.InvalidOperation([decimal.ConversionSyntax]), OverflowError("int too large"),
          psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
          UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
          RecursionError("maximum recursion depth exceeded"), KeyError("fee_details")]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
async def test_each_class_is_isolated_to_its_message_and_the_rest_go_through_in_order(error):
    dead, handler = [], Handler({3, 7}, error)
    await policy(dead).handle(list(range(10)), handler)
    assert handler.done == [0, 1, 2, 4, 5, 6, 8, 9]  # in order, each once
    assert [item for item, _ in dead] == [3, 7]
    assert all(reason.startswith(f"refused by ledger: {type(error).__name__}") for _, reason in dead)


@hsettings(derandomize=True, max_examples=40, deadline=None)
@given(size=st.integers(1, 40), data=st.data())
async def test_any_poisoned_set_is_found_exactly_and_everything_else_handled_once_in_order(size, data):
    poisoned = data.draw(st.sets(st.integers(0, size - 1)))
    dead, handler = [], Handler(poisoned)
    await policy(dead).handle(list(range(size)), handler)
    assert handler.done == [i for i in range(size) if i not in poisoned]
    assert [item for item, _ in dead] == sorted(poisoned)


async def test_a_clean_batch_is_handled_in_one_call():
    dead, handler = [], Handler()
    await policy(dead).handle(list(range(100)), handler)
    assert handler.calls == 1 and handler.done == list(range(100)) and not dead


async def test_a_failure_while_a_server_is_away_is_an_outage_and_dead_letters_nothing():
    dead, handler = [], Handler({4})
    with pytest.raises(Outage) as raised:
        await policy(dead, down=["redis at 127.0.0.1:1 refused"]).handle(list(range(10)), handler)
    assert "redis at 127.0.0.1:1 refused" in str(raised.value) and not dead and handler.calls == 1


async def test_a_timeout_while_the_servers_answer_is_retried_before_it_is_blamed_on_the_message():
    class Flaky(Handler):
        async def __call__(self, items):
            self.calls += 1
            if self.calls <= 2:
                raise TimeoutError("a slow answer")
            self.done.extend(items)

    dead, handler = [], Flaky()
    await policy(dead, retry_transient_attempts=3).handle([1, 2, 3], handler)
    assert handler.done == [1, 2, 3] and not dead and handler.calls == 3


async def test_a_timeout_that_follows_one_message_ends_as_its_dead_letter():
    dead, handler = [], Handler({2}, TimeoutError("this one always times out"))
    await policy(dead, retry_transient_attempts=2).handle([1, 2, 3], handler)
    assert handler.done == [1, 3] and [item for item, _ in dead] == [2]


async def test_an_outage_in_the_dead_letter_itself_is_an_outage():
    async def probe():
        pass

    async def letter(item, reason):
        raise Outage(ConnectionRefusedError("kafka"), "kafka")

    with pytest.raises(Outage):
        await Policy("clearing", probe, letter, backoff=Backoff(0, 0)).handle([1], Handler({1}))


def test_backoff_is_exponential_capped_and_jittered():
    random.seed(3)  # tenacity's jitter comes from the random module
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next() for _ in range(8)]
    for waited, step in zip(delays, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]):
        assert step / 2 <= waited <= step
    assert len(set(delays[3:])) == 5  # at the cap too
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5


def test_a_reason_is_printable_and_bounded():
    assert describe(ValueError("bad \udcff byte")) == "ValueError: bad \\udcff byte"
    assert len(describe(ValueError("x" * 10_000))) <= 2001


async def test_a_class_declared_an_outage_is_never_dead_lettered():
    class Contention(Exception):
        pass

    dead = []
    with pytest.raises(Outage):
        await policy(dead, outages=(Contention,)).handle([1, 2, 3], Handler({2}, Contention("token changed")))
    assert not dead
