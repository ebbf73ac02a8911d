"""A batch as the steps that keep its order, pure: the registry entries it carries (persons,
institutions, catalogue items) apply between the events before them and those after them, so a
batch settles as its events would one at a time (gongji.settlement.planning plans each step's work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.domain import Output
from gongji.settlement.events import Event, Institution, Person

if TYPE_CHECKING:
    from gongji.settlement.planning import Rules

Work = list[tuple[int, Event]]  # events of the batch with their position in it


@dataclass(frozen=True, slots=True)
class Registry:
    """Registry entries to store between the events before them and those after them."""

    persons: list[Person]
    institutions: list[Institution]
    catalogue: list[CatalogueItem] = field(default_factory=list)


def steps(events: list[Event | CatalogueItem], rules: Rules) -> tuple[list[Registry | Work], dict[int, Output]]:
    """The batch as the steps that keep its order (a registry change applies between the events
    before it and those after it), and the answers to person events refused outright."""
    done: list[Registry | Work] = []
    refused: dict[int, Output] = {}
    persons, institutions, catalogue = [], [], []  # of the registry step being gathered
    work: Work = []
    for index, event in enumerate(events):
        if isinstance(event, (Person, Institution, CatalogueItem)):
            if work:  # the events before it see the registry as it was
                done.append(work)
                work = []
            if isinstance(event, Person):
                rejection = rules.check_person(event)
                if rejection:
                    refused[index] = Output(event.psn_no, rejection)
                else:
                    persons.append(event)
            else:
                (institutions if isinstance(event, Institution) else catalogue).append(event)
        else:
            if persons or institutions or catalogue:
                done.append(Registry(persons, institutions, catalogue))
                persons, institutions, catalogue = [], [], []
            work.append((index, event))
    if persons or institutions or catalogue:
        done.append(Registry(persons, institutions, catalogue))
    if work:
        done.append(work)
    return done, refused
