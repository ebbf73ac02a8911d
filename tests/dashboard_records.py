"""Records for the dashboard's tests, encoded as the services publish them: Avro single-object
encoding, and on `settlements` the headers gongji-type and gongji-id. Fields a test does not name
get a plain value of their type."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.settings import Settings

CATALOG = SchemaCatalog()
_ids = itertools.count(1)


def _plain(avro_type):
    if isinstance(avro_type, list):  # a union: its first branch (null where there is one)
        return None if "null" in avro_type else _plain(avro_type[0])
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            return Decimal("0.00")
        return {"array": [], "string": "", "long": 0, "int": 0, "boolean": False}.get(avro_type["type"])
    return {"string": "", "long": 0, "int": 0, "boolean": False, "bytes": b""}.get(avro_type)


def record(name: str, **values) -> dict:
    """A `name` record: the given values, a plain value of its type for every other field."""
    full = CATALOG.schema(name)
    return {field["name"]: values[field["name"]] if field["name"] in values else _plain(field["type"])
            for field in full["fields"]}


def settlement(psn_no: str, *, insured: str = "152501", treated: str = "152501", inst: str = "H1",
               hifp: str = "100.00", maf: str = "0.00", acct: str = "20.00", mulaid: str = "0.00",
               cash: str = "5.00", limit_left: str = "1000.00", med_type: str = "11") -> dict:
    n = next(_ids)
    fund = Decimal(hifp) + Decimal(maf)
    personal = Decimal(acct) + Decimal(mulaid) + Decimal(cash)
    return record(
        "Settlement", claim_id=f"C{n}", setl_id=f"S{n}", psn_no=psn_no, mdtrt_id=f"M{n}", med_type=med_type,
        psn_type="1101", insu_admdvs=insured, mdtrtarea_admvs=treated, fixmedins_code=inst,
        setl_time="2023-03-01T10:00:00+08:00", medfee_sumamt=fund + personal, inscp_scp_amt=fund + personal,
        hifp_pay=Decimal(hifp), maf_pay=Decimal(maf), fund_pay_sumamt=fund, psn_part_amt=personal,
        acct_pay=Decimal(acct), acct_mulaid_pay=Decimal(mulaid), psn_cash_pay=Decimal(cash),
        pool_prop_selfpay=Decimal("0.10"), clr_type="11", clr_optins=insured,
        setldetail=[{"fund_pay_type": "310100", "fund_payamt": Decimal(hifp),
                     "crt_payb_lmt_amt": Decimal(limit_left), "setl_proc_info": "test"}])


def rejection(psn_no: str, code: str = "UNKNOWN_PERSON") -> dict:
    return record("Rejection", claim_id=f"C{next(_ids)}", psn_no=psn_no, err_code=code, err_msg="test",
                  input_type="claim")


def dead_letter(reason: str = "undecodable: not Avro single-object encoding: expected marker c3 01") -> dict:
    return record("DeadLetter", topic="claims", partition=0, offset=next(_ids), reason=reason, original=b"junk",
                  failed_at="2023-03-01T10:00:00+08:00", service="settlement")


def fraud_signal(subject: str, rule: str = "VISITS_PER_DAY") -> dict:
    return record("FraudSignal", signal_id=f"SIG{next(_ids)}", rule_id=rule, category="fraud", severity="high",
                  subject_type="person", subject_id=subject, admdvs="152501",
                  window_start="2023-03-01T00:00:00+08:00", window_end="2023-03-02T00:00:00+08:00",
                  claim_ids=["C1", "C2", "C3", "C4"], count=4, threshold="> 3 visits", amount=Decimal("812.40"),
                  reason=f"person {subject} was settled 4 times at 3 institutions in one day",
                  detected_at="2023-03-01T18:00:00+08:00")


def institution(code: str, level: str, kind: str = "1") -> dict:
    return record("Institution", fixmedins_code=code, fixmedins_name=f"Hospital {code}", fixmedins_type=kind,
                  medins_lv=level, grassroots=False, admdvs="152501")


KINDS = {"Settlement": "settlement", "Rejection": "rejection"}


def rows(settings: Settings, named: list[tuple[str, dict]]) -> list[tuple[str, bytes | None, bytes, list]]:
    """(topic, key, value, headers) for records, on the topics the services publish them to."""
    topics = settings.topics
    out = []
    for name, data in named:
        value = CATALOG.encode(name, data)
        if name in KINDS:
            ident = (data.get("claim_id") or "").encode()
            out.append((topics.settlements, data["psn_no"].encode(), value,
                        [("gongji-type", KINDS[name].encode()), ("gongji-id", ident)]))
        elif name == "DeadLetter":
            out.append((topics.dead_letters, None, value, []))
        elif name == "FraudSignal":
            out.append((topics.fraud_signals, data["subject_id"].encode(), value, []))
        elif name == "Institution":
            out.append((topics.institutions, data["fixmedins_code"].encode(), value, []))
    return out


async def send(settings: Settings, named: list[tuple[str, dict]], timestamp_ms: int | None = None) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, headers=headers, timestamp_ms=timestamp_ms)
                   for topic, key, value, headers in rows(settings, named)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
