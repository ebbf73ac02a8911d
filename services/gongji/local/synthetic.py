"""Synthetic but realistic traffic for both seed regions: institutions of every level, in-service
and retired persons with family bindings and family-doctor contracts, opening balances and monthly
credits, claims with 甲/乙/丙 lines, limit prices and non-medical goods, cross-region visits,
day surgery (日间手术, Erenhot's insured), reversals and resends. Deterministic for a seed. Events are (event_type, wire dict) pairs.
`gongji synthetic` writes a year of it as the JSON lines replay and simulate read.

With `unclassified` above 0, the registry carries the seed regions' sample catalogues
(settlement/catalogues/*.csv, which classify every item as CATALOGUE does) and that share of the
medical fee lines leaves its classification to them (就医地目录), settling as if it had sent it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from importlib.resources import files

from gongji.contract.wire import MULAID_RELATIONS

REGIONS = ("152501", "990100")
CST = timezone(timedelta(hours=8))
CENT = Decimal("0.01")

# (list code, name, class 01/02/03, unit price yuan, limit price or None, selfpay_prop, non-medical)
CATALOGUE = [
    ("XA01", "阿莫西林胶囊", "01", "0.35", None, None, False),
    ("XB02", "苯磺酸氨氯地平片", "01", "1.20", None, None, False),
    ("XC03", "二甲双胍缓释片", "01", "0.85", None, None, False),
    ("XD04", "阿托伐他汀钙片", "02", "2.60", None, "0.10", False),
    ("XE05", "复方丹参滴丸", "02", "0.1250", None, "0.10", False),
    ("XF06", "门诊诊查费", "01", "25.00", None, None, False),
    ("XG07", "血常规检查", "01", "20.00", None, None, False),
    ("XH08", "CT 平扫", "02", "260.00", "220.00", "0.05", False),
    ("XI09", "一次性输液器", "02", "12.00", "10.00", "0.20", False),
    ("XJ10", "进口人工泪液", "03", "68.00", None, None, False),
    ("XK11", "健身卡", "03", "150.00", None, None, True),
    ("XL12", "保健营养品", "03", "88.00", None, None, True),
]


# Day surgery (日间手术) procedures on Erenhot's sample list: its insured only (990100 lists none).
DAY_SURGERY = {"152501": ("13.41", "51.23", "53.02")}


def yuan(value: Decimal | str) -> Decimal:
    return Decimal(value).quantize(CENT)


class Traffic:
    """A synthetic population and its claims."""

    def __init__(self, persons: int = 2000, seed: int = 7, year: int = 2023, tag: str = "", family: float = 0.15,
                 window: int | None = None, unclassified: float = 0.0):
        self.rng = random.Random(seed)
        # Enrolment dates and day surgery draw from their own generator: the main stream stays as it was.
        self._diseases = random.Random(f"{seed}-diseases")
        self.seed = seed
        self.family = family  # share of persons bound to a family account holder (家庭共济)
        self.year = year
        self.tag = tag  # makes ids unique across runs sharing one cluster
        # Reversals pick from the last `window` to `2 * window` claims (None: all): bounded memory for
        # an endless stream.
        self.window = window
        self.unclassified = unclassified  # share of medical fee lines sent without their classification
        self.institutions = self._institutions()
        self.persons = self._persons(persons)
        self._claims: list[dict] = []
        self._serial = 0

    # ---------------------------------------------------------------- registry
    def _institutions(self) -> list[dict]:
        rows = []
        for region in REGIONS:
            for number, (kind, level, grassroots) in enumerate(
                [("1", "3", False)] * 3 + [("1", "2", False)] * 4 + [("1", "1", True)] * 8 + [("2", "1", False)] * 5
            ):
                code = f"{'H' if kind == '1' else 'P'}{region}{number:03d}"
                rows.append({"fixmedins_code": code, "fixmedins_name": f"{region} {'医院' if kind == '1' else '药店'} {number}",
                             "fixmedins_type": kind, "medins_lv": level, "grassroots": grassroots, "admdvs": region})
        return rows

    def _persons(self, count: int) -> list[dict]:
        rng = self.rng
        rows: list[dict] = []
        for number in range(count):
            region = REGIONS[number % 2]
            retired = rng.random() < 0.3
            row = {"psn_no": f"{self.tag}{region}{number:08d}", "insutype": "310",
                   "psn_type": "1201" if retired else "1101", "insu_admdvs": region,
                   "psn_insu_stas": "1" if rng.random() > 0.01 else "2",
                   "fd_fixmedins_code": None, "mulaid_holder_psn_no": None, "mulaid_relation": None,
                   "psn_idet_type": None, "chronic_diseases": None, "cvlserv_flag": None}
            roll = rng.random()
            if roll < 0.02:  # 门诊大病: dialysis, chemotherapy
                row["chronic_diseases"] = [rng.choice(("N18.5", "Z51.1"))]
            elif roll < 0.14:  # 门诊慢特病: hypertension, diabetes, coronary disease
                row["chronic_diseases"] = rng.choice((["I10"], ["E11"], ["I10", "E11"], ["I25"]))
            if row["chronic_diseases"]:  # 备案 dates, before the year (continuity: chronic_since)
                row["chronic_since"] = {code: f"{self.year - 1 - self._diseases.randrange(0, 8)}-"
                                              f"{self._diseases.randrange(1, 13):02d}-01"
                                        for code in row["chronic_diseases"]}
            if rng.random() < 0.03:  # 医疗救助 categories (三条线)
                row["psn_idet_type"] = rng.choice(("tekun", "dibao", "dibao_edge", "illness_poverty"))
            if rng.random() < 0.05:
                row["cvlserv_flag"] = "1"  # 公务员医疗补助
            if region == "990100" and rng.random() < 0.4:
                row["fd_fixmedins_code"] = f"H{region}{rng.randrange(7, 15):03d}"  # a grassroots clinic
            if rows and rng.random() < self.family:
                # 家庭共济 binds within one insured region, one level deep (a holder is no dependant).
                holder = rng.choice([row for row in rows[-40:] if row["insu_admdvs"] == region] or rows[-1:])
                if holder["mulaid_holder_psn_no"] is None and holder["insu_admdvs"] == region:
                    row["mulaid_holder_psn_no"] = holder["psn_no"]
                    row["mulaid_relation"] = rng.choice(MULAID_RELATIONS)
            rows.append(row)
        return rows

    def registry(self) -> list[tuple[str, dict]]:
        return ([("institution", row) for row in self.institutions] + [("person", row) for row in self.persons]
                + [("catalogue", row) for row in (sample_catalogue() if self.unclassified else [])])

    def openings(self) -> list[tuple[str, dict]]:
        """An opening balance migrated from the legacy system, then January's monthly credit.
        The same events on every call."""
        rng = random.Random(f"{self.seed}-openings")
        events = []
        for row in self.persons:
            retired = row["psn_type"].startswith("12")
            events.append(("credit", {"credit_id": f"{row['psn_no']}-open", "psn_no": row["psn_no"],
                                      "ym": f"{self.year}-01", "crdt_type": "opening", "crdt_base": None,
                                      "amount": yuan(rng.uniform(0, 1500))}))
            base = yuan(rng.uniform(5500, 6500) if retired else rng.uniform(3500, 15000))
            events.append(("credit", {"credit_id": f"{row['psn_no']}-{self.year}01", "psn_no": row["psn_no"],
                                      "ym": f"{self.year}-01", "crdt_type": "monthly", "crdt_base": base,
                                      "amount": None}))
        return events

    # ---------------------------------------------------------------- claims
    def _line(self, serial: int) -> dict:
        code, _name, level, price, limit, prop, non_med = self.rng.choice(CATALOGUE)
        count = Decimal(self.rng.choice((1, 1, 2, 3, 6, 10, 28)))
        price_d = Decimal(price)
        line = {"feedetl_sn": str(serial), "med_list_codg": code, "list_type": "101" if code < "XF" else "201",
                "chrgitm_lv": level, "det_item_fee_sumamt": yuan(price_d * count), "cnt": count,
                "pric": price_d, "pric_uplmt_amt": Decimal(limit) if limit else None,
                "selfpay_prop": Decimal(prop) if prop else None, "non_med_flag": "1" if non_med else None}
        if self.unclassified and not non_med and self.rng.random() < self.unclassified:
            line.update(chrgitm_lv=None, pric_uplmt_amt=None, selfpay_prop=None)  # the catalogue's to say
        return line

    def _treatment(self, serial: int, scale: int) -> dict:
        """A large 甲类 line: a dialysis or chemotherapy session, or an inpatient stay's care."""
        price = yuan(self.rng.uniform(scale, scale * 8))
        return {"feedetl_sn": str(serial), "med_list_codg": "XT13", "list_type": "201", "chrgitm_lv": "01",
                "det_item_fee_sumamt": price, "cnt": Decimal(1), "pric": price, "pric_uplmt_amt": None,
                "selfpay_prop": None, "non_med_flag": None}

    def claim(self) -> tuple[str, dict]:
        rng = self.rng
        self._serial += 1
        person = rng.choice(self.persons)
        region = person["insu_admdvs"]
        if rng.random() < 0.05:  # 异地就医: treated in the other region
            region = REGIONS[1 - REGIONS.index(region)]
        if person["fd_fixmedins_code"] and rng.random() < 0.5:
            institution = person["fd_fixmedins_code"]
        else:
            institution = rng.choice([row for row in self.institutions if row["admdvs"] == region])["fixmedins_code"]
        when = datetime(self.year, 1, 1, 8, tzinfo=CST) + timedelta(
            days=rng.randrange(0, 364), minutes=rng.randrange(0, 600))
        lines = [self._line(n) for n in range(1, rng.randrange(2, 6))]
        med_type, diagnosis = "11", None
        diseases = person["chronic_diseases"]
        if diseases and rng.random() < 0.4:  # 门诊慢特病 or 门诊大病, now and then an unrecognised diagnosis
            med_type, diagnosis = "14", rng.choice(diseases) if rng.random() < 0.9 else "J45"
        elif rng.random() < 0.03:
            med_type = "21"  # an inpatient stay
        if med_type == "21" or diagnosis in ("N18.5", "Z51.1"):
            hospitals = [row for row in self.institutions if row["admdvs"] == region and row["fixmedins_type"] == "1"]
            institution = rng.choice(hospitals)["fixmedins_code"]
            lines.append(self._treatment(len(lines) + 1, 2_000 if med_type == "14" else 6_000))
        surgery = None
        if (med_type == "11" and institution.startswith("H") and person["insu_admdvs"] in DAY_SURGERY
                and self._diseases.random() < 0.005):
            med_type, surgery = "14", self._diseases.choice(DAY_SURGERY[person["insu_admdvs"]])
            price = yuan(self._diseases.uniform(3_000, 12_000))
            lines.append({"feedetl_sn": str(len(lines) + 1), "med_list_codg": "XS14", "list_type": "201",
                          "chrgitm_lv": "01", "det_item_fee_sumamt": price, "cnt": Decimal(1), "pric": price,
                          "pric_uplmt_amt": None, "selfpay_prop": None, "non_med_flag": None})
        claim = {"claim_id": f"{self.tag}C{self._serial:09d}", "mdtrt_id": f"{self.tag}M{self._serial:09d}",
                 "psn_no": person["psn_no"], "fixmedins_code": institution, "med_type": med_type,
                 "insutype": "310", "setl_time": when.isoformat(),
                 "acct_used_flag": "1" if rng.random() < 0.7 else "0", "fee_details": lines,
                 "dise_codg": diagnosis, "oprn_oprt_code": surgery}
        self._claims.append(claim)
        if self.window and len(self._claims) > 2 * self.window:
            del self._claims[:-self.window]
        return "claim", claim

    def stream(self, count: int, reversals: float = 0.02, resends: float = 0.02) -> Iterator[tuple[str, dict]]:
        """`count` events: mostly new claims, some reversals of earlier ones, some exact resends."""
        reversed_ids: set[str] = set()
        for _ in range(count):
            roll = self.rng.random()
            if self._claims and roll < reversals:
                original = self.rng.choice(self._claims)
                self._serial += 1
                reversed_ids.add(original["claim_id"])
                when = datetime.fromisoformat(original["setl_time"]) + timedelta(days=self.rng.randrange(0, 20))
                yield "reversal", {"claim_id": f"{self.tag}R{self._serial:09d}", "orig_claim_id": original["claim_id"],
                                   "psn_no": original["psn_no"], "setl_time": when.isoformat()}
            elif self._claims and roll < reversals + resends:
                yield "claim", self.rng.choice(self._claims[-50:])  # a hospital resending its request
            else:
                yield self.claim()

    def whole_year(self, claims: int, reversals: float = 0.02, resends: float = 0.02) -> Iterator[tuple[str, dict]]:
        """A calendar year in time order: the registry, the opening balances, then month by month
        each person's monthly credit (January's base all year) and the month's claims, reversals and
        resends by setl_time (a reversal dated into the next year comes last)."""
        yield from self.registry()
        bases: dict[str, Decimal] = {}
        for kind, credit in self.openings():
            if credit["crdt_type"] == "monthly":
                bases[credit["psn_no"]] = credit["crdt_base"]
            else:
                yield kind, credit
        events = sorted(self.stream(claims, reversals, resends), key=lambda event: event[1]["setl_time"])
        position = 0
        for month in range(1, 13):
            ym = f"{self.year}-{month:02d}"
            for psn_no, base in bases.items():
                yield "credit", {"credit_id": f"{psn_no}-{self.year}{month:02d}", "psn_no": psn_no, "ym": ym,
                                 "crdt_type": "monthly", "crdt_base": base, "amount": None}
            while position < len(events) and (month == 12 or events[position][1]["setl_time"][:7] <= ym):
                yield events[position]
                position += 1


def json_line(kind: str, data: dict) -> str:
    """One event as replay's JSON line: money and counts as strings ("12.30"), never floats."""
    return json.dumps({"event_type": kind, **data}, ensure_ascii=False, default=str)


def command(args: argparse.Namespace, resolve: Callable) -> None:
    """`gongji synthetic`: a year of traffic for both seed regions as JSON lines, on stdout or --out."""
    traffic = Traffic(persons=args.persons, seed=args.seed, year=args.year, family=args.family)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for kind, data in traffic.whole_year(args.claims):
            out.write(json_line(kind, data) + "\n")
    finally:
        if args.out:
            out.close()


def sample_catalogue() -> list[dict]:
    """The seed regions' sample catalogues (settlement/catalogues/*.csv) as catalogue events' wire dicts."""
    import csv

    from gongji.settlement.catalogue import CatalogueItem
    from gongji.settlement.codec import to_wire

    folder = files("gongji.settlement").joinpath("catalogues")
    return [to_wire(CatalogueItem.model_validate({name: cell for name, cell in row.items() if cell != ""}))
            for region in REGIONS
            for row in csv.DictReader(folder.joinpath(f"{region}.csv").read_text(encoding="utf-8").splitlines())]
