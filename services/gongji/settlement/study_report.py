"""`gongji simulate`'s report: two runs' tallies (gongji.settlement.study_tally) side by side, as rows
(`build`), then as terminal tables (rich), CSV, JSON and a self-contained HTML page whose charts are
drawn by plotly.js embedded in it (no network needed to open it).

Money is fen until it is shown, and shown exactly (yuan with two places); the charts alone draw
yuan as floats, as pictures of the figures the tables state.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gongji.common.reports import csv_text, money_text
from gongji.settlement.study_tally import FUND_NAMES, FUNDS, PAID, mean, percentile

if TYPE_CHECKING:
    from gongji.settlement.simulate import Run

#: The columns of every row: what it is, then the two runs and the change. `unit` says how to read
#: the numbers: yuan (exact, two places), persons, or yuan per 1,000 insured per month.
COLUMNS = ("section", "dimension", "key", "measure", "unit", "baseline", "study", "change")
DIMENSIONS = ("region", "status", "assistance", "med_type")
PERCENTILES = (("mean", None), ("median", 50), ("p90", 90), ("p99", 99))


@dataclass
class Report:
    rows: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["section"] == name]


def _row(section: str, dimension: str, key: str, measure: str, base: int | Decimal | None,
         study: int | Decimal | None, unit: str = "yuan") -> dict[str, Any]:
    change = study - base if base is not None and study is not None else None
    return {"section": section, "dimension": dimension, "key": key, "measure": measure, "unit": unit,
            "baseline": base, "study": study, "change": change}


def build(baseline: Run, study: Run, name: Callable[[str], str], top: int = 10) -> Report:
    """Every figure of the report, as rows of COLUMNS (money in fen; cost in yuan, Decimal)."""
    a, b = baseline.tally, study.tally
    report = Report()
    rows = report.rows
    for index, fund in enumerate(FUNDS):
        rows.append(_row("funds", "all", "all", fund, a.totals[index], b.totals[index]))
    groups_a, groups_b = {**a.groups, **a.by_class()}, {**b.groups, **b.by_class()}
    for dimension in DIMENSIONS:
        keys = sorted({key for dim, key in (*groups_a, *groups_b) if dim == dimension})
        for key in keys:
            left, right = groups_a.get((dimension, key)), groups_b.get((dimension, key))
            for index, fund in enumerate(FUNDS):
                rows.append(_row("breakdown", dimension, key, fund, left[index] if left else 0,
                                 right[index] if right else 0))
    burdens_a, burdens_b = a.burdens(), b.burdens()
    for key in sorted(set(burdens_a) | set(burdens_b), key=lambda k: (k != "all", k)):
        left, right = burdens_a.get(key, []), burdens_b.get(key, [])
        rows.append(_row("burden", "class", key, "persons", len(left), len(right), "persons"))
        for measure, p in PERCENTILES:
            pick = mean if p is None else (lambda values, p=p: percentile(values, p))
            rows.append(_row("burden", "class", key, measure, pick(left), pick(right)))
    for cap in sorted(set(a.caps) | set(b.caps)):
        rows.append(_row("caps", "cap", cap, "persons reaching it", len(a.caps.get(cap, ())),
                         len(b.caps.get(cap, ())), "persons"))
    for region in sorted(set(a.insured) | set(b.insured)):
        rows.append(_row("cost", "region", region, "insured", a.insured.get(region, 0), b.insured.get(region, 0),
                         "persons"))
        rows.append(_row("cost", "region", region, "funds per 1,000 insured per month",
                         a.cost_per_thousand(region), b.cost_per_thousand(region), "yuan/1000/month"))
    def describe(psn_no: str) -> str:  # region and class, never the psn_no
        return f"{(a.persons.get(psn_no) or b.persons[psn_no]).region} " + "/".join(
            a.classes.get(psn_no) or b.classes.get(psn_no) or ("unknown", "unknown"))

    rows += _movers("persons", {p: t.funds[PAID] for p, t in a.persons.items()},
                    {p: t.funds[PAID] for p, t in b.persons.items()}, top, name, describe)
    rows += _movers("institutions", a.institutions, b.institutions, top, lambda code: code, lambda code: "")
    report.run = {"lines": baseline.lines, "seconds": round(baseline.seconds + study.seconds, 3),
                  "baseline": {**a.counts, "resent": a.resent}, "study": {**b.counts, "resent": b.resent}}
    return report


def _movers(section: str, left: dict[str, int], right: dict[str, int], top: int, name: Callable[[str], str],
            describe: Callable[[str], str]) -> list[dict[str, Any]]:
    """The `top` keys whose funds paid changed most (by size of the change, then key)."""
    changes = sorted(((right.get(key, 0) - left.get(key, 0), key) for key in set(left) | set(right)),
                     key=lambda item: (-abs(item[0]), item[1]))
    return [_row(section, describe(key), name(key), "funds paid", left.get(key, 0), right.get(key, 0))
            for change, key in changes[:top] if change]


def _shown(row: dict[str, Any], name: str) -> str:
    value = row[name]
    if value is None:
        return ""
    if row["unit"] == "yuan":
        return money_text(value)
    if row["unit"] == "persons":
        return str(value)
    return f"{value:.2f}"


def _percent(row: dict[str, Any]) -> str:
    base, change = row["baseline"], row["change"]
    if not base or change is None:
        return ""
    return f"{Decimal(change) * 100 / Decimal(base):+.2f}%"


def csv_report(report: Report) -> str:
    """Every row, money as yuan with two places."""
    return csv_text(COLUMNS, ({**row, **{k: _shown(row, k) for k in ("baseline", "study", "change")}}
                              for row in report.rows))


def json_report(report: Report) -> str:
    rows = [{**row, **{k: _shown(row, k) for k in ("baseline", "study", "change")}} for row in report.rows]
    return json.dumps({"rows": rows, "run": report.run}, ensure_ascii=False, indent=1)


def tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report as titled tables of text: what the terminal and the HTML page show."""
    def sided(row: dict[str, Any]) -> list[str]:
        return [_shown(row, "baseline"), _shown(row, "study"), _shown(row, "change"), _percent(row)]

    sides = ["baseline", "study", "change", "%"]
    found = [("Paid by fund (yuan)", ["fund", *sides],
              [[FUND_NAMES[row["measure"]], *sided(row)] for row in report.section("funds")])]
    for dimension in DIMENSIONS:
        rows = [row for row in report.section("breakdown") if row["dimension"] == dimension
                and row["measure"] in ("fund_pay_sumamt", "hifp_pay", "psn_part_amt")]
        found.append((f"By {dimension} (yuan)", [dimension, "measure", *sides],
                      [[row["key"], FUND_NAMES[row["measure"]], *sided(row)] for row in rows]))
    found.append(("Personal burden per person (yuan; persons with a result)", ["class", "measure", *sides],
                  [[row["key"], row["measure"], *sided(row)] for row in report.section("burden")]))
    found.append(("Persons reaching each cap", ["cap", *sides],
                  [[row["key"], *sided(row)] for row in report.section("caps")]))
    found.append(("Cost per 1,000 insured per month (yuan)", ["region", "measure", *sides],
                  [[row["key"], row["measure"], *sided(row)] for row in report.section("cost")]))
    for section, title in (("persons", "Persons whose funds paid change most"),
                           ("institutions", "Institutions whose funds paid change most")):
        found.append((title, [section[:-1], "region class" if section == "persons" else "", *sides],
                      [[row["key"], row["dimension"], *sided(row)] for row in report.section(section)]))
    return found


def print_tables(report: Report) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 110)
    for title, header, rows in tables(report):
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for index, column in enumerate(header):
            table.add_column(column, justify="right" if index >= len(header) - 4 else "left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    run = report.run
    print(f"{run['lines']:,} lines; baseline {_counts(run['baseline'])}; study {_counts(run['study'])}", flush=True)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(kind, 0):,} {kind}s" for kind in ("settlement", "reversal", "rejection")) + \
        f" ({counts.get('resent', 0):,} resent answers counted once)"


def _figures(report: Report) -> list[Any]:
    import plotly.graph_objects as go

    def bars(title: str, labels: list[str], rows: list[dict[str, Any]], scale: float = 100.0):
        figure = go.Figure([go.Bar(name=side, x=labels, y=[float(row[side] or 0) / scale for row in rows])
                            for side in ("baseline", "study")])
        return figure.update_layout(title=title, barmode="group", height=380, margin=dict(t=50, b=40))

    def changes(title: str, labels: list[str], rows: list[dict[str, Any]]):
        figure = go.Figure(go.Bar(x=labels, y=[float(row["change"] or 0) / 100 for row in rows],
                                  marker_color=["#c0392b" if (row["change"] or 0) > 0 else "#2e86c1" for row in rows]))
        return figure.update_layout(title=title, height=340, margin=dict(t=50, b=40))

    funds = [row for row in report.section("funds") if row["measure"] not in ("medfee_sumamt",)]
    labels = [FUND_NAMES[row["measure"]] for row in funds]
    figures = [bars("Paid by fund (yuan)", labels, funds),
               changes("Change by fund, study − baseline (yuan)", labels, funds)]
    for dimension in DIMENSIONS:
        rows = [row for row in report.section("breakdown")
                if row["dimension"] == dimension and row["measure"] == "fund_pay_sumamt"]
        figures.append(changes(f"Change in funds paid by {dimension} (yuan)", [row["key"] for row in rows], rows))
    burden = [row for row in report.section("burden") if row["measure"] != "persons"]
    figures.append(bars("Personal burden per person (yuan)", [f"{row['key']} {row['measure']}" for row in burden],
                        burden))
    caps = report.section("caps")
    figures.append(bars("Persons reaching each cap", [row["key"] for row in caps], caps, 1.0))
    movers = report.section("persons")
    figure = go.Figure(go.Bar(x=[float(row["change"]) / 100 for row in movers], y=[row["key"] for row in movers],
                              orientation="h"))
    figures.append(figure.update_layout(title="Persons whose funds paid change most (yuan)", height=380))
    return figures


def html_report(report: Report, args: Any) -> str:
    """One page, every table and a chart per section, plotly.js inside it: it opens offline."""
    import plotly.io
    from plotly.offline import get_plotlyjs

    charts = "\n".join(plotly.io.to_html(figure, include_plotlyjs=False, full_html=False)
                       for figure in _figures(report))
    parts = []
    for title, header, rows in tables(report):
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>")
    study = html.escape(str(getattr(args, "study", "")))
    baseline = html.escape(str(getattr(args, "baseline", None) or "the shipped policies"))
    source = html.escape(str(getattr(args, "file", "")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gongji simulate: {study}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:2px 8px}}td:nth-last-child(-n+4){{text-align:right}}</style>
<script>{get_plotlyjs()}</script></head><body>
<h1>What-if policy study</h1>
<p>Events: {source}. Baseline: {baseline}. Study: {study}. Both settled from empty state by the same
engine; a resent answer counts once; money exact to the fen in the tables.</p>
{charts}
{''.join(parts)}
</body></html>
"""
