"""Which regions an input event speaks for, and whether a signing key limited to regions may send it.

Pure. A key for 152501 may not send events for 990100 persons or institutions (README, "Signed
input"): each event speaks for the regions below, and a limited key must cover all of them.

| event | speaks for |
|---|---|
| person | its `insu_admdvs`, and the region it is registered in now (a move needs both) |
| institution | its `admdvs`, and the region it is registered in now |
| claim | the person's insured region and the institution's region, as registered |
| reversal, credit | the person's insured region, as registered |
| catalogue item | its `admdvs`: a region's catalogue is that region's to load |

A region that cannot be established (a claim for a person or institution not registered yet) is
refused to a limited key: its event would otherwise settle on whatever the registry says later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional

from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.events import AccumulatorQuery, Claim, Credit, Event, Institution, Person, Reversal

#: (region, what it is) pairs an event speaks for; region None: not registered, so unknown.
Claims = list[tuple[Optional[str], str]]


def spoken_for(event: Event, persons: Mapping[str, Person | None],
               institutions: Mapping[str, Institution | None]) -> Claims:
    """The regions `event` speaks for, given the registry as it stands before it."""
    if isinstance(event, Person):
        now = persons.get(event.psn_no)
        return [(event.insu_admdvs, "the person's insured region")] + (
            [(now.insu_admdvs, "the person's insured region before this change")] if now else [])
    if isinstance(event, CatalogueItem):
        return [(event.admdvs, "the catalogue's region")]
    if isinstance(event, Institution):
        now = institutions.get(event.fixmedins_code)
        return [(event.admdvs, "the institution's region")] + (
            [(now.admdvs, "the institution's region before this change")] if now else [])
    person = persons.get(event.psn_no)
    insured = (person.insu_admdvs if person else None, "the person's insured region")
    if isinstance(event, Claim):
        institution = institutions.get(event.fixmedins_code)
        return [insured, (institution.admdvs if institution else None, "the institution's region")]
    if isinstance(event, (Reversal, Credit, AccumulatorQuery)):
        return [insured]
    raise TypeError(f"not an input event: {type(event).__name__}")


def refusal(key_id: str, regions: frozenset[str], claims: Claims) -> str | None:
    """Why key `key_id`, limited to `regions`, may not send an event speaking for `claims` (None: it may)."""
    for region, what in claims:
        if region is None:
            return (f"key {key_id!r} may speak only for {', '.join(sorted(regions))}, and {what} is unknown "
                    "(not in the registry yet): send the registry entry first")
        if region not in regions:
            return f"key {key_id!r} may speak only for {', '.join(sorted(regions))}, not {region} ({what})"
    return None


def check(events: Iterable[tuple[Event, str | None, frozenset[str] | None]],
          persons: Mapping[str, Person | None], institutions: Mapping[str, Institution | None]) -> list[str | None]:
    """For each (event, key id, the key's regions or None), in the order they will be settled, the
    reason a limited key may not send it (None: allowed). Registry events that are taken change the
    registry the events after them are judged against, as settling them will."""
    persons, institutions = dict(persons), dict(institutions)
    verdicts = []
    for event, key_id, regions in events:
        reason = None
        if regions is not None:
            reason = refusal(key_id or "", regions, spoken_for(event, persons, institutions))
        if reason is None:
            if isinstance(event, Person):
                persons[event.psn_no] = event
            elif isinstance(event, Institution):
                institutions[event.fixmedins_code] = event
        verdicts.append(reason)
    return verdicts


def needed(events: Iterable[Event]) -> tuple[set[str], set[str]]:
    """The persons and institutions whose registry entries `spoken_for` reads for `events`."""
    persons, institutions = set(), set()
    for event in events:
        if isinstance(event, Institution):
            institutions.add(event.fixmedins_code)
        elif not isinstance(event, CatalogueItem):
            persons.add(event.psn_no)
            if isinstance(event, Claim):
                institutions.add(event.fixmedins_code)
    return persons, institutions
