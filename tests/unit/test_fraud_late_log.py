"""Late events are said once a minute per side, not once each: an out-of-order feed (a region's
day delivered the next morning) must not flood the log, and nothing late goes unsaid."""

from __future__ import annotations

import logging

from gongji.fraud.service import LateLog


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def said(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "gongji.fraud"]


def test_the_first_late_event_of_a_minute_is_said_with_its_id_and_the_rest_counted_when_the_next_comes(caplog):
    caplog.set_level(logging.INFO, logger="gongji.fraud")
    clock = Clock()
    lates = LateLog(every=60.0, clock=clock)
    lates.late("person", "event %s", "C1")
    for n in range(2, 6):  # four more within the minute: counted, not said
        clock.now += 10
        lates.late("person", "event %s", f"C{n}")
    lates.late("institution", "activity %s", "C9")  # its own side: said at once
    assert said(caplog) == ["fraud: late event C1", "fraud: late activity C9"]
    clock.now = 1059.9  # still inside C1's minute
    lates.late("person", "event %s", "C6")
    assert len(said(caplog)) == 2
    clock.now = 1060.0  # the minute is over: the count first, then the new one with its id
    lates.late("person", "event %s", "C7")
    assert said(caplog)[2:] == ["fraud: 5 more late events on the person side in the 60 s after the one above",
                                "fraud: late event C7"]
    clock.now += 120  # a quiet spell: the next is said alone, nothing to count
    lates.late("person", "event %s", "C8")
    assert said(caplog)[4:] == ["fraud: late event C8"]
