"""Malformed and hostile messages for the fuzz suite, as a careless or hostile integrator sends them.

Each is a `Hostile`: the topic kind it goes to ("claim", "credit", "person", "institution" for the
input topics, "result" for `settlements`), its key and bytes, its class (for the closing figures),
and, for inputs that can be read far enough to be named, the id the settlement service's rejection
must carry. Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from tests.integration.support import loose

MAGIC = b"\xc3\x01"
RECORDS = {"claim": "Claim", "reversal": "Reversal", "credit": "Credit", "person": "Person",
           "institution": "Institution", "result": "Settlement"}


@dataclass(frozen=True)
class Hostile:
    kind: str  # topic kind: claim, credit, person, institution, result
    key: bytes | None
    value: bytes | None
    cls: str  # what is wrong, for the figures
    named: str | None = None  # the claim, credit or person id a rejection answers it by; None: a dead letter
    headers: tuple = ()  # a result's routing headers, as the settlement service sets them


def encode(kind: str, data: dict) -> bytes:
    return loose(RECORDS[kind], data)


class HostileTraffic:
    """Builds the hostile messages around a small valid population (`persons`, `institutions`)."""

    def __init__(self, tag: str, seed: int = 8):
        self.tag = tag
        self.rng = random.Random(seed)
        self.serial = 0

    def ident(self, prefix: str) -> str:
        self.serial += 1
        return f"{self.tag}{prefix}{self.serial:05d}"

    # ------------------------------------------------------------------ bytes that are no record
    def junk(self, kind: str, count: int) -> list[Hostile]:
        rng, out = self.rng, []
        claim = encode("claim", self.claim(self.tag + "P", self.tag + "H"))
        for _ in range(count):
            roll = rng.randrange(7)
            key = rng.randbytes(rng.randrange(0, 12)) or None
            if roll == 0:
                out.append(Hostile(kind, key, rng.randbytes(rng.randrange(1, 300)), "random bytes"))
            elif roll == 1:  # a null value needs a key (a tombstone)
                out.append(Hostile(kind, key or b"k", rng.choice((b"", None)), "empty or null value"))
            elif roll == 2:
                out.append(Hostile(kind, key, bytes([rng.randrange(256) for _ in range(2)]).replace(MAGIC, b"\x00\x00")
                                   + rng.randbytes(rng.randrange(0, 40)), "wrong magic"))
            elif roll == 3:
                out.append(Hostile(kind, key, MAGIC + rng.randbytes(rng.randrange(0, 8)), "truncated header"))
            elif roll == 4:
                out.append(Hostile(kind, key, MAGIC + rng.randbytes(8) + claim[10:], "unknown fingerprint"))
            elif roll == 5:
                out.append(Hostile(kind, key, claim[:10] + rng.randbytes(rng.randrange(0, 200)), "garbage body"))
            else:
                cut = rng.randrange(11, len(claim) - 1)
                out.append(Hostile(kind, key, claim[:cut], "truncated body"))
        if kind == "result":  # half of them headed as settlements, which clearing must then read
            out = [Hostile(h.kind, h.key, h.value, h.cls + " (headed)", headers=(("gongji-type", b"settlement"),))
                   if n % 2 else h for n, h in enumerate(out)]
        return out

    def wrong_records(self) -> list[Hostile]:
        """Well-formed records on a topic that does not take them."""
        person = {"psn_no": self.ident("W"), "insutype": "310", "psn_type": "1101", "insu_admdvs": "152501",
                  "psn_insu_stas": "1"}
        claim = self.claim(self.tag + "P", self.tag + "H")
        return [Hostile("claim", b"k", encode("person", person), "record of another topic"),
                Hostile("credit", b"k", encode("claim", claim), "record of another topic"),
                Hostile("person", b"k", encode("claim", self.claim(self.tag + "P", self.tag + "H")),
                        "record of another topic"),
                Hostile("institution", b"k", encode("person", dict(person, psn_no=self.ident("W"))),
                        "record of another topic")]

    # ------------------------------------------------------------------ records with bad values
    def claim(self, patient: str, institution: str, **changes) -> dict:
        ident = self.ident("C")
        line = {"feedetl_sn": "1", "med_list_codg": "XA01", "list_type": "101", "chrgitm_lv": "01",
                "det_item_fee_sumamt": Decimal("30.00"), "cnt": Decimal("2"), "pric": Decimal("15.00"),
                "pric_uplmt_amt": None, "selfpay_prop": None, "non_med_flag": None}
        line.update(changes.pop("line", {}))
        data = {"claim_id": ident, "mdtrt_id": "M" + ident, "psn_no": patient, "fixmedins_code": institution,
                "med_type": "11", "insutype": "310", "setl_time": "2023-05-01T10:00:00+08:00",
                "acct_used_flag": "1", "fee_details": [line], "dise_codg": None}
        data.update(changes)
        return data

    def bad_claims(self, psn_no: str, institution: str) -> list[Hostile]:
        big = Decimal(10) ** 12
        cases = [
            ("amount of 10^12 yuan", {"line": {"det_item_fee_sumamt": big, "pric": big, "cnt": Decimal(1)}}),
            ("amount past the schema's precision", {"line": {"det_item_fee_sumamt": Decimal(10) ** 15,
                                                             "pric": Decimal(10) ** 15, "cnt": Decimal(1)}}),
            ("price of 40 digits", {"line": {"pric": Decimal("9" * 34)}}),
            ("negative amount", {"line": {"det_item_fee_sumamt": Decimal("-30.00")}}),
            ("zero count", {"line": {"cnt": Decimal(0)}}),
            ("negative price", {"line": {"pric": Decimal("-15.00")}}),
            ("lines that do not add up", {"line": {"det_item_fee_sumamt": Decimal("31.00")}}),
            ("no fee lines", {"fee_details": []}),
            ("dated 2999", {"setl_time": "2999-01-01T10:00:00+08:00"}),
            ("dated year 1", {"setl_time": "0001-01-01T00:00:00+14:00"}),
            ("time that is no time", {"setl_time": "yesterday"}),
            ("code with a trailing space", {"fixmedins_code": institution + " "}),
            ("unknown institution", {"fixmedins_code": self.tag + "NOPE"}),
            ("unknown person", {"psn_no": self.tag + "NOBODY"}),
            ("unknown med_type", {"med_type": "99"}),
            ("acct_used_flag 7", {"acct_used_flag": "7"}),
            ("insutype 390", {"insutype": "390"}),
        ]
        out = []
        for cls, change in cases:
            data = self.claim(psn_no, institution, **change)
            out.append(Hostile("claim", data["psn_no"].encode(), encode("claim", data), cls, data["claim_id"]))
        for cls, bad in (("id with a NUL byte", "a\x00b"), ("id with a control character", "a\x1bb"),
                         ("id with surrounding spaces", " a "), ("id of 5,000 characters", "x" * 5000),
                         ("empty id", "")):
            data = self.claim(psn_no, institution)
            data["claim_id"] = bad + data["claim_id"] if bad else ""
            out.append(Hostile("claim", psn_no.encode(), encode("claim", data), cls))
        return out

    def bad_credits(self, psn_no: str) -> list[Hostile]:
        out = []
        for cls, change in (("opening credit of 10^12", {"amount": Decimal(10) ** 12}),
                            ("negative opening credit", {"amount": Decimal("-1.00")}),
                            ("month that is no month", {"ym": "2023-13"}),
                            ("month in 2999", {"ym": "2999-01"}),
                            ("monthly credit without a base", {"crdt_type": "monthly", "amount": None}),
                            ("unknown credit type", {"crdt_type": "gift"})):
            data = {"credit_id": self.ident("K"), "psn_no": psn_no, "ym": "2023-02", "crdt_type": "opening",
                    "crdt_base": None, "amount": Decimal("10.00"), **change}
            out.append(Hostile("credit", psn_no.encode(), encode("credit", data), cls, data["credit_id"]))
        return out

    def bad_persons(self) -> list[Hostile]:
        out = []
        for cls, change in (("own family account holder", {"mulaid_holder_psn_no": None,
                                                            "mulaid_relation": "spouse"}),
                            ("sibling as family account holder", {"mulaid_holder_psn_no": self.tag + "P",
                                                                  "mulaid_relation": "sibling"}),
                            ("psn_type that is no type", {"psn_type": "9999"}),
                            ("region that is no region", {"insu_admdvs": "15250"})):
            psn = self.ident("Q")
            data = {"psn_no": psn, "insutype": "310", "psn_type": "1101", "insu_admdvs": "152501",
                    "psn_insu_stas": "1", **change}
            if cls == "own family account holder":
                data["mulaid_holder_psn_no"] = psn
            out.append(Hostile("person", psn.encode(), encode("person", data), cls, psn))
        data = {"psn_no": "a\x00" + self.ident("Q"), "insutype": "310", "psn_type": "1101",
                "insu_admdvs": "152501", "psn_insu_stas": "1"}
        out.append(Hostile("person", b"nul", encode("person", data), "id with a NUL byte"))
        return out

    def bad_institutions(self) -> list[Hostile]:
        out = []
        for cls, change in (("type that is no type", {"fixmedins_type": "7"}),
                            ("hospital without a level", {"medins_lv": ""}),
                            ("code with a NUL byte", {"fixmedins_code": "H\x00" + self.ident("I")})):
            data = {"fixmedins_code": self.ident("I"), "fixmedins_name": "x", "fixmedins_type": "1",
                    "medins_lv": "1", "grassroots": False, "admdvs": "152501", **change}
            out.append(Hostile("institution", b"i", encode("institution", data), cls))
        return out

    # ------------------------------------------------------------------ results downstream reads
    def bad_results(self, template: dict) -> list[Hostile]:
        """Settlement results no settlement service wrote: ids the ledger's text refuses, amounts past
        its numeric(16,2), totals that do not add up."""
        out = []
        huge = Decimal(10) ** 14
        for cls, change in (("psn_no with a NUL byte", {"psn_no": "P\x00" + self.ident("S")}),
                            ("institution with a NUL byte", {"fixmedins_code": "H\x00x"}),
                            ("amount above 10^14 yuan", {"medfee_sumamt": huge, "inscp_scp_amt": huge,
                                                          "psn_part_amt": huge, "psn_cash_pay": huge}),
                            ("totals that do not add up", {"medfee_sumamt": Decimal("1.00")}),
                            ("time that is no time", {"setl_time": "later"})):
            ident = self.ident("S")
            data = {**template, "claim_id": ident, "setl_id": "SETL" + ident, **change}
            out.append(Hostile("result", b"r", encode("result", data), cls, headers=(("gongji-type", b"settlement"),)))
        return out
