"""The gateway bench's requests and counts, and the gateway's answer to a request that failed, in
pure code: every synthetic claim the bench sends maps back to itself through the gateway's own
mapper; answers are counted by kind; an unforeseen failure is answered in the national shape and
logged without anything of the request."""

from __future__ import annotations

import logging

from gongji.gateway import failures, national
from gongji.local.gateway_bench import answer_kind, request_2207
from gongji.local.synthetic import Traffic


def test_every_bench_request_maps_back_to_its_claim():
    traffic = Traffic(persons=300, seed=5, tag="t")
    for number in range(400):
        _, claim = traffic.claim()
        request = request_2207(claim, f"m{number}")
        infno, msgid, code, data = national.envelope(request)
        mapped = national.claim_2207(msgid, code, data, request["inf_time"])
        assert infno == "2207" and mapped["claim_id"] == national.claim_id(claim["fixmedins_code"], f"m{number}")
        assert {k: v for k, v in mapped.items() if k != "claim_id"} == {k: v for k, v in claim.items() if k != "claim_id"}


def test_answers_are_counted_by_kind():
    assert answer_kind(200, national.answer(0, "", {})) == "infcode 0"
    assert answer_kind(200, national.pending("gw-H1-m1")) == "pending"
    assert answer_kind(200, national.refusal("NOT_INSURED: the person is not insured")) == "infcode -1 NOT_INSURED"
    assert answer_kind(503, national.refusal("the gateway's store (Redis) is unreachable")) == "HTTP 503"


class Watch:
    def __init__(self):
        self.failed_with = []

    def failed(self, error):
        self.failed_with.append(error)


def test_an_unforeseen_failure_is_answered_in_the_national_shape_and_logged_without_the_request(caplog):
    def mapper():
        raise KeyError("psn_no 150000199001011234")  # a careless message carrying personal data

    try:
        mapper()
    except KeyError as error:
        with caplog.at_level(logging.INFO):
            document, status = failures.answer(error, Watch())
    assert status == 500 and document["infcode"] == -1
    assert document["err_msg"] == "the gateway failed (KeyError); try again with the same msgid"
    assert [r.getMessage() for r in caplog.records] == [
        f"gateway: a request failed: KeyError at {__file__}:{mapper.__code__.co_firstlineno + 1}"]


def test_a_redis_failure_is_503_and_starts_the_watch():
    from redis.exceptions import ConnectionError

    watch = Watch()
    document, status = failures.answer(ConnectionError("Error 111 connecting"), watch)
    assert status == 503 and document["infcode"] == -1 and "Redis" in document["err_msg"]
    assert len(watch.failed_with) == 1
