"""A pass is decided by pure code (gongji.settlement.planning): given what the store returned, which
events commit, which move holds, which wait for the next pass. Here with no store at all: the
snapshot and the holder's account are written by hand, and so are the store's answers.

B holds the family account (100.00); A, B's spouse, has no money of their own; A's visit is one
丙类 line of 50.00, all of it A's to pay, so the family account pays it."""

from __future__ import annotations

import pytest
from tests.unit.builders import BOOK, claim, credit, fen, institution, line, person

from gongji.settlement import planning, rules
from gongji.settlement.family import family_accounts
from gongji.settlement.domain import Output, PersonState, Rejection
from gongji.settlement.store import HolderView, Snapshot, Status
from gongji.settlement.steps import Registry, steps as batch_steps

pytestmark = pytest.mark.unit

HOLDER, PATIENT = person("B"), person("A", mulaid_holder_psn_no="B", mulaid_relation="spouse")
REGISTRY = {"A": PATIENT, "B": HOLDER}
ACCOUNT = PersonState(token="t-B", balance=fen("100.00"))
VISIT = claim(line("50.00", lv="03"), psn_no="A", acct_used_flag="1", claim_id="C-A")
OWN_VISIT = claim(line("30.00", lv="03"), psn_no="B", acct_used_flag="1", claim_id="C-B")


def snapshot(work: planning.Work) -> Snapshot:
    """What the store would return for `work`: B's account, no records yet."""
    wanted = planning.reads(work, optimistic=False)
    return Snapshot(persons={psn: REGISTRY.get(psn) for psn in wanted.psn_nos},
                    institutions={code: institution() for code in wanted.codes},
                    states={psn: ACCOUNT if psn == "B" else PersonState() for psn in wanted.psn_nos},
                    records={key: None for key in wanted.keys},
                    owners={key: psn for key, psn in wanted.claims})


def planned(work: planning.Work, optimistic: bool = False) -> planning.Pass:
    snap = snapshot(work)
    family = family_accounts(work, snap, optimistic)
    views = {key: HolderView(ACCOUNT.token, ACCOUNT.balance, 0, HOLDER) for key in family.wants}
    return planning.plan_pass(work, snap, family, views, BOOK, rules, "n1", optimistic)


def test_the_batch_is_cut_where_the_registry_changes_and_a_bad_person_is_answered_in_place():
    own_holder = person("Z", mulaid_holder_psn_no="Z", mulaid_relation="spouse")
    events = [VISIT, HOLDER, institution(), OWN_VISIT, own_holder, VISIT]
    steps, refused = batch_steps(events, rules)
    assert steps == [[(0, VISIT)], Registry([HOLDER], [institution()]), [(3, OWN_VISIT)], [(5, VISIT)]]
    assert list(refused) == [4] and refused[4].value.err_code == "MULAID_NOT_ALLOWED"


def test_a_family_claim_holds_first_and_marks_the_patient_before():
    plan = planned([(0, VISIT)])
    ((position, hold),) = plan.holds()
    assert (position, hold.holder, hold.amount, hold.expected, hold.holder_token) == (0, "B", fen("50.00"), 0, "t-B")
    assert planning.pending_marks(plan.holds()) == [("A", "C-A", "B")]
    plan.answered(plan.holds(), [Status.OK])
    ((_, commit),) = plan.commits()
    assert commit.psn_no == "A" and commit.record.effects.mulaid_pay == fen("50.00")
    answers, retry = plan.outcome()
    assert retry == [] and answers[0].value.acct_mulaid_pay == fen("50.00")


def test_a_hold_that_fails_is_never_followed_by_its_commit():
    plan = planned([(0, VISIT)])
    plan.answered(plan.holds(), [Status.SHORT])
    assert plan.commits() == []
    assert plan.outcome() == ({}, [(0, VISIT)])


def test_a_dependants_claim_waits_behind_the_holders_own_commit():
    """Holds go before commits: A's hold on B's account cannot follow B's own claim in one pass."""
    plan = planned([(0, OWN_VISIT), (1, VISIT)])
    assert plan.holds() == []
    ((position, commit),) = plan.commits()
    assert (position, commit.psn_no, commit.expected) == (0, "B", "t-B")
    plan.answered(plan.commits(), [Status.OK])
    answers, retry = plan.outcome()
    assert list(answers) == [0] and retry == [(1, VISIT)]


def test_the_optimistic_pass_leaves_the_family_and_the_holder_to_the_next():
    top_up = credit("2023-01", amount="10.00", psn_no="B", credit_id="K-B")
    work = [(0, VISIT), (1, top_up)]
    family = family_accounts(work, snapshot(work), optimistic=True)
    assert family.deferred == {"A", "B"} and family.wants == set()
    plan = planned(work, optimistic=True)
    assert plan.holds() == [] and plan.commits() == []
    assert plan.outcome() == ({}, work)


def test_an_id_another_person_used_is_refused_without_a_write():
    stolen = claim(line("10.00"), psn_no="B", claim_id="C-A")
    work = [(0, stolen)]
    snap = snapshot(work)
    snap.owners[planning.claim_key("C-A")] = "A"
    plan = planning.plan_pass(work, snap, family_accounts(work, snap, False), {}, BOOK, rules, "n1", False)
    assert plan.holds() == [] and plan.commits() == []
    answers, retry = plan.outcome()
    assert retry == [] and isinstance(answers[0], Output) and isinstance(answers[0].value, Rejection)
    assert answers[0].value.err_code == "DUPLICATE_CONFLICT"


def test_with_token_is_replace_of_the_token():
    import dataclasses

    from gongji.settlement.domain import PersonState, YearTotals
    from gongji.settlement.planning import with_token

    state = PersonState(token="t0", balance=1234, years={2023: YearTotals(visits=2)}, pending={"C1": "H"})
    assert with_token(state, "t1") == dataclasses.replace(state, token="t1")
    assert state.token == "t0" and with_token(state, "t1").years is state.years
    assert set(PersonState.__slots__) == {field.name for field in dataclasses.fields(PersonState)}
