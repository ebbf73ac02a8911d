"""Hand-picked mutation testing of the money code: can the tests fail on a small plausible bug?

Each mutant replaces one exact piece of source text (it must occur once in its file) with a wrong
one: a comparison off by one, a cap or a min/max dropped, the rounding mode changed, a sign
flipped, a term dropped from a sum, a ratio on the wrong base, a check removed from a Lua script.
The mutant is written over the file, the tests that cover the file run with `-x`, and the file is
put back whatever happens. A mutant the tests pass is a survivor: either a gap in the tests or an
equivalent mutant (listed in EQUIVALENT with the reason).

    .venv/bin/python tests/mutation.py                # all mutants (about 12 minutes on 2 cores)
    .venv/bin/python tests/mutation.py rules hold     # only mutants whose file or label has a word
    .venv/bin/python tests/mutation.py --full ...     # judge by the whole unit tier (the Lua by the
                                                      # contract and exactly-once suites on every store)

Heavy: run it under `flock /tmp/gongji-heavy.lock`. It rewrites files in services/ while it runs,
so run it in a worktree nobody else is testing in. Nothing is written but the mutated file, and that
is restored.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "services/gongji/"
MONEY, ENGINE, POOLING = PKG + "common/money.py", PKG + "settlement/rules.py", PKG + "settlement/pooling.py"
PLANNING, SETTLER = PKG + "settlement/planning.py", PKG + "settlement/settler.py"
FAMILY = PKG + "settlement/family.py"
DOMAIN, EVENTS = PKG + "settlement/domain.py", PKG + "settlement/events.py"
LEDGER, CLEARING = PKG + "ledger/domain.py", PKG + "clearing/domain.py"
COMMIT_LUA, HOLD_LUA = PKG + "settlement/lua/commit.lua", PKG + "settlement/lua/hold.lua"
POLICY, FRAUD_RULES, FRAUD_DOMAIN = PKG + "settlement/relief.py", PKG + "fraud/rules.py", PKG + "fraud/domain.py"
BURDEN, OOP_SHARE = PKG + "common/burden.py", PKG + "fraud/relief.py"
STUDY = PKG + "settlement/study_tally.py"
POLICY_FILE = PKG + "settlement/policy.py"
MEMORY = PKG + "settlement/memory_store.py"

U = "tests/unit/"
SETTLEMENT_TESTS = [U + "test_engine_rules.py", U + "test_cap_edges.py", U + "test_major_list.py",
                    U + "test_continuity.py", U + "test_benefit_layers.py",
                    U + "test_family_binding.py", U + "test_engine_properties.py", U + "test_batch_invariance.py",
                    U + "test_assistance_rules.py", U + "test_engine_shortcuts.py"]
HIGH_EXPENSE_TESTS = [U + "test_high_expense_income.py", U + "test_fraud_answers.py", U + "test_fraud_rules.py"]
# The Lua scripts, and the Settler's holds across crashes and retries, are exercised against a store:
# the contract suite and the exactly-once suite, on the memory store and on the real Redis server.
CONTRACT_ON_REDIS = ["tests/integration/test_store_contract.py", "-k", "redis and not cluster"]
EXACTLY_ONCE = ["tests/integration/test_settler_exactly_once.py", "-k", "memory or redis and not cluster"]
CONTRACT_ON_MEMORY = ["tests/integration/test_store_contract.py", "-k", "memory"]
PASSES = [U + "test_planning.py", U + "test_handler_holds.py", U + "test_family_binding.py",
          U + "test_batch_invariance.py", U + "test_engine_rules.py"]
# Per file, the test runs that judge its mutants (each a pytest argument list; the first to fail kills).
TESTS = {
    MONEY: [[U + "test_money.py", *SETTLEMENT_TESTS, U + "test_edge.py", U + "test_avro.py", U + "test_ledger.py"]],
    ENGINE: [SETTLEMENT_TESTS],
    POOLING: [SETTLEMENT_TESTS],
    PLANNING: [PASSES, EXACTLY_ONCE],
    FAMILY: [PASSES, EXACTLY_ONCE],
    SETTLER: [PASSES, EXACTLY_ONCE],
    DOMAIN: [[U + "test_edge.py", *SETTLEMENT_TESTS]],
    EVENTS: [[U + "test_edge.py", *SETTLEMENT_TESTS]],
    LEDGER: [[U + "test_ledger.py"]],
    CLEARING: [[U + "test_clearing.py"]],
    STUDY: [[U + "test_simulate_study.py"]],
    COMMIT_LUA: [CONTRACT_ON_REDIS],
    HOLD_LUA: [CONTRACT_ON_REDIS],
    POLICY: [[U + "test_assistance_rules.py", U + "test_three_lines.py", U + "test_policy.py",
              U + "test_engine_shortcuts.py"]],
    POLICY_FILE: [SETTLEMENT_TESTS],
    FRAUD_RULES: [HIGH_EXPENSE_TESTS],
    FRAUD_DOMAIN: [HIGH_EXPENSE_TESTS],
    BURDEN: [[U + "test_oop_share.py"]],
    OOP_SHARE: [[U + "test_oop_share.py"]],
    MEMORY: [CONTRACT_ON_MEMORY, [*PASSES, U + "test_reversal_window.py"]],
}
FULL = {path: [["tests/unit"]] + (runs[1:] if path in (PLANNING, FAMILY, SETTLER) else [])
        for path, runs in TESTS.items() if not path.endswith(".lua")}
FULL[MEMORY] = [["tests/unit"], CONTRACT_ON_MEMORY]
FULL[COMMIT_LUA] = FULL[HOLD_LUA] = [["tests/integration/test_store_contract.py",
                                     "tests/integration/test_settler_exactly_once.py"]]

# (file, original text, mutated text, what the mutant does)
MUTANTS: list[tuple[str, str, str, str]] = [
    # ---------------------------------------------------------------- the in-memory store (replay's)
    (MEMORY, "            if stored or state.pending:\n", "            if stored:\n",
     "memory commit: the commit's own pending marks kept"),
    (MEMORY, "                statuses.append(Status.DUPLICATE)\n                continue\n", "                pass\n",
     "memory commit: a recorded event committed again"),
    (MEMORY, "if original is None or original.reversed_by is not None:\n                    statuses.append",
     "if original is None:\n                    statuses.append", "memory commit: a reversed original reversed again"),
    (MEMORY, "            if state.kept_from > before.kept_from:", "            if False:",
     "memory commit: closed years' records kept"),
    # ---------------------------------------------------------------- money
    (MONEY, "quantize(_ONE, rounding=ROUND_HALF_UP))\n\n\ndef yuan_to_fen",
     "quantize(_ONE, rounding='ROUND_HALF_EVEN'))\n\n\ndef yuan_to_fen", "mul_round: half-even"),
    (MONEY, "quantize(_ONE, rounding=ROUND_HALF_UP))\n\n\ndef yuan_to_fen",
     "quantize(_ONE, rounding='ROUND_DOWN'))\n\n\ndef yuan_to_fen", "mul_round: round down"),
    (MONEY, "quantize(_ONE, rounding=ROUND_HALF_UP))\n\n\ndef yuan_to_fen",
     "quantize(_ONE, rounding='ROUND_HALF_DOWN'))\n\n\ndef yuan_to_fen", "mul_round: half-down"),
    (MONEY, "(Decimal(fen) / divisor).quantize(_ONE, rounding=ROUND_HALF_UP)",
     "(Decimal(fen) / divisor).quantize(_ONE, rounding='ROUND_HALF_EVEN')", "div_round: half-even"),
    (MONEY, "(Decimal(fen) / divisor).quantize(_ONE, rounding=ROUND_HALF_UP)",
     "(Decimal(fen) / divisor).quantize(_ONE, rounding='ROUND_DOWN')", "div_round: round down"),
    (MONEY, "(Decimal(fen) / divisor).quantize(_ONE, rounding=ROUND_HALF_UP)",
     "(Decimal(fen) / divisor).quantize(_ONE, rounding='ROUND_UP')", "div_round: round up"),
    (MONEY, "    if number != number.quantize(CENT):\n        raise MoneyError(f\"more than two",
     "    if False:\n        raise MoneyError(f\"more than two", "to_fen: sub-fen accepted"),
    (MONEY, "return int(to_decimal(value)) * 100", "return int(to_decimal(value)) * 10", "to_fen(int): ×10"),
    (MONEY, "return Decimal(fen).scaleb(-2) if fen else _ZERO_YUAN", "return Decimal(fen) if fen else _ZERO_YUAN",
     "to_yuan: not scaled"),
    (MONEY, "return Decimal(fen).scaleb(-2) if fen else _ZERO_YUAN", "return Decimal(fen).scaleb(-2)",
     "to_yuan: 0 as 0E-2"),
    (MONEY, "    if fen < 0:\n        return \"-\" + yuan_text", "    if fen <= 0:\n        return \"-\" + yuan_text",
     "yuan_text: -0.00"),
    (MONEY, "return \"%d.%02d\" % divmod(fen, 100)", "return \"%d.%d\" % divmod(fen, 100)", "yuan_text: 0.5 for 0.05"),
    (MONEY, "if ratio < 0 or ratio > 1:", "if ratio < 0 or ratio >= 1:", "to_ratio: 1 refused"),
    (MONEY, "if ratio < 0 or ratio > 1:", "if ratio <= 0 or ratio > 1:", "to_ratio: 0 refused"),
    (MONEY, "if ratio < 0 or ratio > 1:", "if ratio < 0:", "to_ratio: above 1 accepted"),
    (MONEY, "if abs(value) >= _LIMIT:", "if abs(value) > _LIMIT:", "to_decimal(int): 10^18 accepted"),
    (MONEY, "if number and number.adjusted() >= 18:", "if number and number.adjusted() > 18:",
     "to_decimal: 10^18 accepted"),
    (MONEY, "_places(to_decimal(value, \"price\"), _MICRO,", "_places(to_decimal(value, \"price\"), CENT,",
     "to_price: 2 places"),
    (MONEY, "if len(text) > 60 or", "if len(text) > 600 or", "to_decimal: long text accepted"),
    # ---------------------------------------------------------------- pooling: §2 line split
    (POOLING, "line.pric > limit:", "line.pric >= limit:", "overlmt: >= (equivalent?)"),
    (POOLING, "overlmt = min(amount, yuan_to_fen(", "overlmt = (yuan_to_fen(", "overlmt: not capped at the line"),
    (POOLING, "yuan_to_fen((line.pric - limit) * line.cnt)", "yuan_to_fen(line.pric * line.cnt)",
     "overlmt: whole price"),
    (POOLING, "preselfpay = mul_round(base, line.selfpay_prop)", "preselfpay = mul_round(amount, line.selfpay_prop)",
     "preselfpay: on the amount, not the base"),
    (POOLING, "if level == \"02\" and line.selfpay_prop", "if line.selfpay_prop",
     "preselfpay: for 甲类 too"),
    (POOLING, "return amount, amount, 0, 0, 0, amount", "return amount, amount, 0, 0, 0, 0", "non-medical: not marked"),
    (POOLING, "        non_medical += part[5]\n", "", "split_lines: non_medical dropped"),
    (POOLING, "        overlmt += part[2]\n", "", "split_lines: overlmt dropped"),
    (POOLING, "        preselfpay += part[3]\n", "", "split_lines: preselfpay dropped"),
    (POOLING, "        return LineSplit(*_split(lines[0]))\n", "        return LineSplit(*_split(lines[0])[:5])\n",
     "split_lines: one line's non_medical dropped"),
    # ---------------------------------------------------------------- pooling: §3 general outpatient
    (POOLING, "left = max(0, rules.annual_deductible - totals.deductible_used)",
     "left = rules.annual_deductible - totals.deductible_used", "general: deductible left may go negative"),
    (POOLING, "deductible = min(split.inscp, left)\n        notes.append(f\"{deductible_note}",
     "deductible = left\n        notes.append(f\"{deductible_note}", "general: deductible above the in-scope amount"),
    (POOLING, "elif institution.grassroots and rules.grassroots_deductible_exempt:",
     "elif institution.grassroots or rules.grassroots_deductible_exempt:", "general: grassroots or"),
    (POOLING, "deductible = min(split.inscp, rules.per_visit_deductible[band])",
     "deductible = rules.per_visit_deductible[band]", "general: per-visit deductible not capped"),
    (POOLING, "ratio = min(Decimal(1), ratio + rules.family_doctor_bonus)", "ratio = ratio + rules.family_doctor_bonus",
     "general: family-doctor ratio above 1"),
    (POOLING, "if rules.family_doctor_bonus and person.fd_fixmedins_code == institution.fixmedins_code:",
     "if rules.family_doctor_bonus:", "general: bonus anywhere"),
    (POOLING, "by_ratio = mul_round(split.inscp - deductible, ratio)\n    limit_left = max(0, outpatient_cap",
     "by_ratio = mul_round(split.inscp, ratio)\n    limit_left = max(0, outpatient_cap",
     "general: ratio on the base before deductible"),
    (POOLING, "ratio, ratio_note, outpatient_cap, deductible_note, cap_note = rules.terms[band, retired]",
     "ratio, ratio_note, outpatient_cap, deductible_note, cap_note = rules.terms[band, not retired]",
     "general: terms of the other class"),
    (POLICY_FILE, "cap = self.annual_cap.for_person(retired)", "cap = self.annual_cap.for_person(not retired)",
     "general terms: cap of the other class"),
    (POLICY_FILE, "ratio = self.ratio[band].for_person(retired)", "ratio = self.ratio[band].for_person(False)",
     "general terms: the in-service ratio for everyone"),
    (POOLING, "limit_left = max(0, outpatient_cap - totals.outpatient_pool_paid)",
     "limit_left = outpatient_cap - totals.outpatient_pool_paid", "general: cap left may go negative"),
    (POOLING, "fund_left = max(0, version.annual_fund_cap - totals.fund_cap_used)\n        if fund_left < limit_left:\n"
     "            limit_left = fund_left\n            limit_note",
     "fund_left = version.annual_fund_cap - totals.fund_cap_used\n        if fund_left < limit_left:\n"
     "            limit_left = fund_left\n            limit_note", "general: fund cap left may go negative"),
    (POOLING, "        if fund_left < limit_left:\n            limit_left = fund_left\n            limit_note",
     "        if fund_left <= limit_left:\n            limit_left = fund_left\n            limit_note",
     "general: fund cap note at equality"),
    (POOLING, "        if fund_left < limit_left:\n            limit_left = fund_left\n            limit_note",
     "        if fund_left > limit_left:\n            limit_left = fund_left\n            limit_note",
     "general: fund cap raises the limit"),
    (POOLING, "    if rules.counts_in_fund_cap:\n", "    if False:\n", "general: fund cap ignored"),
    (POOLING, "pooling if rules.counts_in_fund_cap else 0)", "pooling)", "general: counted in the fund cap always"),
    (POOLING, "notes, deductible, pooling,\n", "notes, deductible, by_ratio,\n", "general: accumulates by ratio"),
    (POOLING, "pooling = min(by_ratio, limit_left)\n    notes.append(limit_note)",
     "pooling = by_ratio\n    notes.append(limit_note)", "general: cap not applied"),
    # ---------------------------------------------------------------- pooling: chronic
    (POOLING, "left = max(0, group.annual_deductible - totals.chronic_deductible_used.get(group.name, 0))",
     "left = group.annual_deductible - totals.chronic_deductible_used.get(group.name, 0)",
     "chronic: deductible left may go negative"),
    (POOLING, "    deductible = min(split.inscp, left)\n    ratio = group", "    deductible = left\n    ratio = group",
     "chronic: deductible above the in-scope amount"),
    (POOLING, "limit_left = max(0, group.annual_limit - totals.chronic_paid.get(group.name, 0))",
     "limit_left = group.annual_limit - totals.chronic_paid.get(group.name, 0)", "chronic: limit left may go negative"),
    (POOLING, "ratio = group.ratio.for_person(person.retired)", "ratio = group.ratio.for_person(not person.retired)",
     "chronic: ratio of the other class"),
    (POOLING, "if group.counts_in_fund_cap and version.annual_fund_cap is not None:", "if False:",
     "chronic: fund cap ignored"),
    (POOLING, "        fund_left = max(0, version.annual_fund_cap - totals.fund_cap_used)\n        if fund_left < limit_left:\n"
     "            limit_left = fund_left\n            notes.append",
     "        fund_left = version.annual_fund_cap - totals.fund_cap_used\n        if fund_left < limit_left:\n"
     "            limit_left = fund_left\n            notes.append", "chronic: fund cap left may go negative"),
    (POOLING, "        if fund_left < limit_left:\n            limit_left = fund_left\n            notes.append",
     "        if fund_left <= limit_left:\n            limit_left = fund_left\n            notes.append",
     "chronic: fund cap note at equality"),
    (POOLING, "fund_cap=pooling if group.counts_in_fund_cap else 0,", "fund_cap=pooling,",
     "chronic: counted in the fund cap always"),
    (POOLING, "chronic_deductible=deductible,", "chronic_deductible=0,", "chronic: deductible not accumulated"),
    # ---------------------------------------------------------------- pooling: inpatient, 门诊大病
    (POOLING, "left = max(0, rules.major_outpatient_annual_deductible - totals.major_deductible_used)",
     "left = rules.major_outpatient_annual_deductible - totals.major_deductible_used",
     "major: deductible left may go negative"),
    (POOLING, "deductible = min(split.inscp, rules.deductible[band])", "deductible = rules.deductible[band]",
     "inpatient: deductible not capped"),
    (POOLING, "ratio = rules.ratio[band].for_person(person.retired)",
     "ratio = rules.ratio[band].for_person(not person.retired)", "inpatient: ratio of the other class"),
    (POOLING, "limit_left = max(0, version.annual_fund_cap - totals.fund_cap_used)\n    notes +=",
     "limit_left = version.annual_fund_cap - totals.fund_cap_used\n    notes +=", "inpatient: cap left may go negative"),
    (POOLING, "over_cap = max(0, base - div_round(pooling, ratio))", "over_cap = base - div_round(pooling, ratio)",
     "inpatient: over_cap may go negative"),
    (POOLING, "over_cap = max(0, base - div_round(pooling, ratio))", "over_cap = max(0, base - pooling)",
     "inpatient: over_cap on the payment, not its base"),
    (POOLING, "over_cap = max(0, base - div_round(pooling, ratio))", "over_cap = max(0, split.inscp - div_round(pooling, ratio))",
     "inpatient: over_cap on the base before deductible"),
    (POOLING, "    over_cap = 0\n    if pooling < by_ratio:", "    over_cap = 0\n    if pooling <= by_ratio:",
     "inpatient: over_cap when not capped"),
    (POOLING, "major_deductible=deductible if major else 0)", "major_deductible=0)", "major: deductible not accumulated"),
    # ---------------------------------------------------------------- pooling: recognition, 日间手术 (seed 001)
    (POOLING, "if since is None or since >= closed.isoformat():", "if since is None or since > closed.isoformat():",
     "recognition: an enrolment on the closing day continued"),
    (POOLING, "if since is None or since >= closed.isoformat():", "if since is not None and since >= closed.isoformat():",
     "recognition: an undated enrolment continued"),
    (POOLING, "if closed is not None and day >= closed:", "if closed is not None and day > closed:",
     "recognition: closed a day late"),
    (POOLING, "_age(person.brdy, day) >= limit:", "_age(person.brdy, day) > limit:", "recognition: age limit off by a year"),
    (POOLING, "((day.month, day.day) < (born.month, born.day))", "((day.month, day.day) <= (born.month, born.day))",
     "recognition: a birthday counted a day late"),
    (POOLING, "    return claim.med_type == \"14\"\n", "    return True\n", "day surgery: on any med_type"),
    (POOLING, "    if claim.med_type == \"11\":\n        return _invalid(claim, f\"oprn_oprt_code", "    if False:\n"
     "        return _invalid(claim, f\"oprn_oprt_code", "day surgery: general outpatient claim not refused"),
    # ---------------------------------------------------------------- rules: layers, account, family aid
    (ENGINE, "deductible = min(base, max(0, deductible_total - deductible_used))",
     "deductible = max(0, deductible_total - deductible_used)", "layer: deductible above the base"),
    (ENGINE, "deductible = min(base, max(0, deductible_total - deductible_used))",
     "deductible = min(base, deductible_total - deductible_used)", "layer: deductible left may go negative"),
    (ENGINE, "cap_left = max(0, cap - paid)", "cap_left = cap - paid", "layer: cap left may go negative"),
    (ENGINE, "return min(mul_round(base - deductible, ratio), cap_left)", "return min(mul_round(base, ratio), cap_left)",
     "layer: ratio on the base before deductible"),
    (ENGINE, "return min(mul_round(base - deductible, ratio), cap_left)", "return mul_round(base - deductible, ratio)",
     "layer: cap not applied"),
    (ENGINE, "base = split.inscp - pooling - hifob\n", "base = split.inscp - pooling\n",
     "civil servant: hifob not taken off"),
    (ENGINE, "base = split.inscp - pooling - hifob - cvlserv", "base = split.inscp - pooling - hifob",
     "assistance: cvlserv not taken off"),
    (ENGINE, "base = split.inscp - pooling - hifob - cvlserv", "base = split.inscp - pooling - cvlserv",
     "assistance: hifob not taken off"),
    (ENGINE, "if category is not None and basic.kind != \"general\" and", "if category is not None and",
     "assistance: on general outpatient too"),
    (ENGINE, "and person.cvlserv_flag == \"1\":", ":", "civil servant: for everyone"),
    (ENGINE, "_preferential(assistance.preferential, base - maf, totals", "_preferential(assistance.preferential, "
     "base, totals", "preferential: maf not taken off the burden"),
    (ENGINE, "fund_total = pooling + hifob + cvlserv + maf + pref", "fund_total = pooling + hifob + cvlserv + maf",
     "preferential: left out of the fund total"),
    (ENGINE, "hifob, cvlserv, maf + pref,\n", "hifob, cvlserv, maf,\n", "preferential: left out of maf_pay"),
    (ENGINE, "new_setl_detail(ASSISTANCE, maf + pref,", "new_setl_detail(ASSISTANCE, maf,",
     "preferential: not in the 610100 row"),
    (ENGINE, "totals.maf_pref_burden_used, rules.ratio", "totals.maf_deductible_used, rules.ratio",
     "preferential: the relief deductible's accumulator as the heavy line's"),
    (ENGINE, "rules.annual_limit, totals.maf_pref_paid)", "rules.annual_limit, totals.maf_paid)",
     "preferential: the relief limit's accumulator as its own"),
    (ENGINE, "return pref, below, (f", "return pref, 0, (f", "preferential: the heavy line's accumulator not moved"),
    (BURDEN, "Decimal(inscope - fund) > threshold * inscope", "Decimal(inscope - fund) >= threshold * inscope",
     "oop share: at the threshold counted over"),
    (BURDEN, "return inscope >= minimum and", "return inscope > minimum and", "oop share: the minimum itself too little"),
    (BURDEN, "quantize(SHARE_PLACES, ROUND_HALF_UP)", "quantize(SHARE_PLACES)", "oop share: half-even rounding"),
    (OOP_SHARE, "if category is None:\n        return []", "if False:\n        return []",
     "oop share: persons in no category judged"),
    (OOP_SHARE, "    elif withdraw(bucket, \"OOP_SHARE\"):", "    elif False:", "oop share: never withdrawn"),
    (POLICY, "if person.aid_begndate <= day <= person.aid_enddate:", "if person.aid_begndate <= day < person.aid_enddate:",
     "grant: last day excluded"),
    (POLICY, "if person.aid_begndate <= day <= person.aid_enddate:", "if person.aid_begndate < day <= person.aid_enddate:",
     "grant: first day excluded"),
    (POLICY, "if standing is not None or person.aid_idet_type is None:", "if person.aid_idet_type is None:",
     "grant: before the standing category"),
    (FRAUD_RULES, "return mul_round(to_fen(income), share), f\"", "return to_fen(income), f\"",
     "high-expense: the income, not its share"),
    (FRAUD_RULES, "if share is None or income is None:", "if share is None:", "high-expense: a region without income"),
    (FRAUD_DOMAIN, " - _fen(result[\"overlmt_selfpay\"])", "", "high-expense: over-limit amounts counted"),
    (FRAUD_DOMAIN, " - _fen(result[\"fulamt_ownpay_amt\"])", "", "high-expense: 丙类 and non-medical counted"),
    (ENGINE, "fund_total = pooling + hifob + cvlserv + maf", "fund_total = pooling + hifob + cvlserv",
     "fund total: maf dropped"),
    (ENGINE, "fund_total = pooling + hifob + cvlserv + maf", "fund_total = pooling + hifob + maf",
     "fund total: cvlserv dropped"),
    (ENGINE, "eligible = max(0, personal - split.non_medical)", "eligible = personal - split.non_medical",
     "account: eligible may go negative"),
    (ENGINE, "eligible = max(0, personal - split.non_medical)", "eligible = max(0, personal)",
     "account: pays non-medical lines"),
    (ENGINE, "acct_pay = min(eligible, state.balance)", "acct_pay = min(personal, state.balance)",
     "account: on the whole burden"),
    (ENGINE, "acct_pay = min(eligible, state.balance)", "acct_pay = min(eligible, max(0, state.balance - 1))",
     "account: one fen short of the balance"),
    (ENGINE, "mulaid = min(eligible - acct_pay, max(0, holder_available))", "mulaid = min(eligible, max(0, holder_available))",
     "family aid: own account not taken off"),
    (ENGINE, "mulaid = min(eligible - acct_pay, max(0, holder_available))", "mulaid = min(eligible - acct_pay, holder_available)",
     "family aid: negative availability"),
    (ENGINE, "if holder_available is not None and person.mulaid_holder_psn_no:", "if holder_available is not None:",
     "family aid: without a holder"),
    (ENGINE, "if claim.acct_used_flag == \"1\":", "if True:", "account: used without the flag"),
    # ---------------------------------------------------------------- rules: reversal, credit, bindings
    (ENGINE, "balance = state.balance + effects.acct_pay", "balance = state.balance - effects.acct_pay",
     "reversal: balance sign"),
    (ENGINE, "plus(effects, sign=-1)", "plus(effects, sign=1)", "reversal: accumulators added"),
    (ENGINE, "    if original.reversed_by is not None:\n", "    if False:\n", "reversal: twice"),
    (ENGINE, " or original.settlement.psn_no != reversal.psn_no:", ":", "reversal: another person's claim"),
    (ENGINE, "original is None or original.settlement.is_reversal or", "original is None or",
     "reversal: of a reversal"),
    (ENGINE, "fund_payamt=-row.fund_payamt,", "fund_payamt=row.fund_payamt,", "reversal: detail rows not negated"),
    (ENGINE, "rate = version.crediting.retired_rate if person.retired else version.crediting.in_service_rate",
     "rate = version.crediting.in_service_rate if person.retired else version.crediting.retired_rate",
     "credit: rates swapped"),
    (ENGINE, "    elif holder.insu_admdvs != person.insu_admdvs:\n", "    elif False:\n",
     "binding: holder in another region"),
    (ENGINE, "    elif not holder.active:\n", "    elif False:\n", "binding: inactive holder"),
    (ENGINE, "    elif holder.mulaid_holder_psn_no is not None:\n", "    elif False:\n", "binding: chains"),
    (ENGINE, "    if person.mulaid_holder_psn_no == person.psn_no:\n", "    if False:\n", "person: own holder"),
    (ENGINE, "or person.mulaid_relation not in MULAID_RELATIONS:", ":", "person: any relation"),
    # ---------------------------------------------------------------- planning and settler: family aid, passes
    (FAMILY, "return self.account(key)[1] + self.held[key]", "return self.account(key)[1]",
     "holds: available without what is held"),
    (FAMILY, "balance = self.account(key)[1] - (amount - hold.expected)", "balance = self.account(key)[1] - amount",
     "holds: view debits the whole amount"),
    (PLANNING, "if hold.amount > hold.expected]", "if hold.amount >= hold.expected]", "marks: also for no increase"),
    (PLANNING, "if hold.amount > hold.expected]", "if hold.amount < hold.expected]", "marks: for refunds instead"),
    (FAMILY, "return marked if marked is not None and marked != holder else None",
     "return marked if marked is not None else None", "stray: the current holder too"),
    (FAMILY, "return person.mulaid_holder_psn_no if person is not None and claim.acct_used_flag == \"1\" else None",
     "return person.mulaid_holder_psn_no if person is not None else None", "holder: without acct_used_flag"),
    (PLANNING, "if stray is not None and holds.known(stray_account) and holds.held[stray_account] else ()",
     "if stray is not None and holds.known(stray_account) else ()", "stray: move of nothing"),
    (PLANNING, "release = (holds.move(account, 0, nonce),) if family and holds.held[account] else ()",
     "release = ()", "rejection: hold not released"),
    (PLANNING, "if family and outcome.effects.mulaid_pay != holds.held[account]:", "if family:",
     "hold: moved when unchanged"),
    (PLANNING, "if family and outcome.effects.mulaid_pay != holds.held[account]:",
     "if family and outcome.effects.mulaid_pay > holds.held[account]:", "hold: never shrunk"),
    (PLANNING, "if family and person.active else None", "if family else None", "binding: checked for inactive persons"),
    (PLANNING, "if family and person.active else None", "if False else None", "binding: never checked"),
    (PLANNING, "refunds = (pass_.holds.move(account, 0, pass_.nonce),)", "refunds = ()", "reversal: holder not refunded"),
    (PLANNING, "for hold in plan.holds if position < self.first_failure.get(event.psn_no, len(planned))]",
     "for hold in plan.holds if position <= self.first_failure.get(event.psn_no, len(planned))]",
     "holds: written at a failed position"),
    (PLANNING, "if plan.commit is not None and position < self.first_failure.get(event.psn_no, len(planned))]",
     "if plan.commit is not None and position <= self.first_failure.get(event.psn_no, len(planned))]",
     "commits: written at a failed position"),
    (PLANNING, "            if position >= self.first_failure.get(event.psn_no, len(planned)):",
     "            if position > self.first_failure.get(event.psn_no, len(planned)):", "retry: failed position answered"),
    (SETTLER, "plan.answered(holds, await self.store.hold([hold for _, hold in holds]))",
     "await self.store.hold([hold for _, hold in holds])", "holds: failure ignored"),
    # ---------------------------------------------------------------- events: bounds at the edge; domain: totals
    (EVENTS, "if fen > WIRE_MAX_FEN:", "if fen >= WIRE_MAX_FEN:", "wire max fen refused"),
    (EVENTS, "if fen > WIRE_MAX_FEN:", "if fen > WIRE_MAX_FEN + 1:", "wire max + 1 fen accepted"),
    (EVENTS, "    if fen > ceiling:", "    if fen >= ceiling:", "ceiling refused"),
    (EVENTS, "    if fen > ceiling:", "    if fen > ceiling + 1:", "ceiling + 1 fen accepted"),
    (EVENTS, "if price > WIRE_MAX_PRICE:", "if price >= WIRE_MAX_PRICE:", "wire max price refused"),
    (EVENTS, "if count > WIRE_MAX_COUNT:", "if count >= WIRE_MAX_COUNT:", "wire max count refused"),
    (EVENTS, "if count != count.quantize(Decimal(\"0.0001\")):", "if count != count.quantize(Decimal(\"0.001\")):",
     "count: 3 places"),
    (EVENTS, "if ratio != ratio.quantize(Decimal(\"0.0001\")):", "if ratio != ratio.quantize(Decimal(\"0.001\")):",
     "selfpay_prop: 3 places"),
    (EVENTS, "if value > now + tolerance:", "if value >= now + tolerance:", "setl_time: tolerance edge refused"),
    (EVENTS, "if value > now + tolerance:", "if value > now:", "setl_time: no tolerance"),
    (EVENTS, "if abs(expected - self.det_item_fee_sumamt) > 1:", "if abs(expected - self.det_item_fee_sumamt) > 2:",
     "line: 2 fen of slack"),
    (EVENTS, "if abs(expected - self.det_item_fee_sumamt) > 1:", "if abs(expected - self.det_item_fee_sumamt) > 0:",
     "line: no slack"),
    (EVENTS, "if abs(expected - self.det_item_fee_sumamt) > 1:", "if expected - self.det_item_fee_sumamt > 1:",
     "line: slack one way only"),
    (EVENTS, "LineAmount = Annotated[Fen, Field(ge=0)", "LineAmount = Annotated[Fen, Field(gt=0)", "line: 0.00 refused"),
    (EVENTS, "LineAmount = Annotated[Fen, Field(ge=0)", "LineAmount = Annotated[Fen, Field(ge=-1)",
     "line: -0.01 accepted"),
    (EVENTS, "pric: Annotated[WirePrice, Field(gt=0)]", "pric: Annotated[WirePrice, Field(ge=0)]", "price: 0 accepted"),
    (EVENTS, "pric_uplmt_amt: Annotated[WirePrice, Field(ge=0)]", "pric_uplmt_amt: Annotated[WirePrice, Field(gt=0)]",
     "price limit: 0 refused"),
    (EVENTS, "Count = Annotated[Decimal, BeforeValidator(_guarded(_count)), Field(gt=0)]",
     "Count = Annotated[Decimal, BeforeValidator(_guarded(_count)), Field(ge=0)]", "count: 0 accepted"),
    (EVENTS, "crdt_base: Annotated[Fen, Field(ge=0)", "crdt_base: Annotated[Fen, Field(ge=-1)",
     "credit base: negative accepted"),
    (EVENTS, "amount: Annotated[Fen, Field(ge=0), AfterValidator(_opening_amount)]",
     "amount: Annotated[Fen, Field(ge=-1), AfterValidator(_opening_amount)]", "opening: negative accepted"),
    (EVENTS, "if ym > f\"{present.year:04d}-{present.month:02d}\":", "if ym >= f\"{present.year:04d}-{present.month:02d}\":",
     "credit: this month refused"),
    (EVENTS, "present = (now + _bounds(info).setl_time_tolerance).astimezone(SHANGHAI)",
     "present = now.astimezone(SHANGHAI)", "credit: no tolerance at the month's turn"),
    (EVENTS, "present = (now + _bounds(info).setl_time_tolerance).astimezone(SHANGHAI)",
     "present = (now + _bounds(info).setl_time_tolerance)", "credit: month judged in UTC"),
    (DOMAIN, "group: deductibles.get(group, 0) + sign * e.chronic_deductible}",
     "group: deductibles.get(group, 0) + e.chronic_deductible}", "totals: chronic deductible not undone"),
    (DOMAIN, "group: paid.get(group, 0) + sign * e.chronic_pool}", "group: paid.get(group, 0) + e.chronic_pool}",
     "totals: chronic pool not undone"),
    (DOMAIN, "self.visits + sign * e.visits, self.medfee + sign * e.medfee,",
     "self.visits + sign * e.visits, self.medfee + e.medfee,", "totals: medfee not undone"),
    (DOMAIN, "self.hifob_paid + sign * e.hifob,", "self.hifob_paid + sign * e.hifob_deductible,",
     "totals: large-amount paid from the wrong field"),
    (DOMAIN, "self.maf_pref_burden_used + sign * e.maf_pref_burden, self.maf_pref_paid + sign * e.maf_pref,",
     "self.maf_pref_burden_used + sign * e.maf_pref, self.maf_pref_paid + sign * e.maf_pref_burden,",
     "totals: the heavy line's accumulators swapped"),
    (DOMAIN, "_set_{name}(self, {name})", "_set_{name}(self, {name} if {name} is not None else 0)",
     "positional: None stored as 0"),
    (POLICY, "found.setdefault(code, category)", "found[code] = category", "category: the last listing a code, not the first"),
    (ENGINE, "claim.med_type, institution.admdvs, tuple(details), None, None, None, holder,",
     "claim.med_type, institution.admdvs, tuple(details), None, None, None, person.mulaid_holder_psn_no,",
     "settlement: the holder named without a family payment"),
    (EVENTS, "    if len(value) > limit:\n", "    if len(value) > limit + 1:\n", "text: one character too long"),
    # ---------------------------------------------------------------- Lua: validate first, write last
    (COMMIT_LUA, "if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then", "if false then", "commit: duplicate not checked"),
    (COMMIT_LUA, "if token ~= ARGV[1] then", "if false then", "commit: token not checked"),
    (COMMIT_LUA, "    if #original > start + 4 + b1 * 256 + b2 + b3 * 256 + b4 then\n      return 'stale'",
     "    if false then\n      return 'stale'", "commit: a lean original reversed twice"),
    (COMMIT_LUA, "  elseif string.find(original, '\\n', start, true) then\n    return 'stale'",
     "  elseif false then\n    return 'stale'", "commit: a packed original reversed twice"),
    (COMMIT_LUA, "  if not original then\n    return 'stale'", "  if false then\n    return 'stale'",
     "commit: original need not exist"),
    (COMMIT_LUA, "redis.call('HDEL', KEYS[1], 'pending:' .. ARGV[5])", "", "commit: pending mark kept"),
    (COMMIT_LUA, "  redis.call('HSET', KEYS[2], ARGV[6], original .. '\\n' .. ARGV[5])\n", "", "commit: original not marked"),
    (COMMIT_LUA, "'ver', ARGV[2], unpack(ARGV, 8))", "'ver', ARGV[2], unpack(ARGV, 9))", "commit: first field lost"),
    (HOLD_LUA, "if held ~= ARGV[3] then", "if false then", "hold: expected not checked"),
    (HOLD_LUA, "if ARGV[6] and (redis.call('HGET', KEYS[1], 'ver') or '') ~= ARGV[6] then", "if false then",
     "hold: holder token not checked"),
    (HOLD_LUA, "if balance + tonumber(ARGV[4]) < 0 then", "if balance + tonumber(ARGV[4]) <= 0 then",
     "hold: the whole balance refused"),
    (HOLD_LUA, "if balance + tonumber(ARGV[4]) < 0 then", "if balance + tonumber(ARGV[4]) < -1 then",
     "hold: one fen overdraft"),
    (HOLD_LUA, "if balance + tonumber(ARGV[4]) < 0 then", "if false then", "hold: overdraft"),
    (HOLD_LUA, "if ARGV[2] == '0' then", "if false then", "hold: zero kept as a field"),
    (HOLD_LUA, "redis.call('HSET', KEYS[1], 'ver', ARGV[5])", "", "hold: token unchanged"),
    (HOLD_LUA, "if ARGV[2] == ARGV[3] then\n  return 'ok'\nend", "", "hold: no short cut for no move"),
    # ---------------------------------------------------------------- ledger
    (LEDGER, "if fen[\"acct_mulaid_pay\"] and not s.get(\"mulaid_holder_psn_no\"):", "if False:",
     "settlement: family aid without a holder"),
    (LEDGER, "    if sum(fen[f.field] for f in FUNDS) != fen[\"fund_pay_sumamt\"]:\n", "    if False:\n",
     "settlement: funds need not add up"),
    (LEDGER, "payable = fen[\"fund_pay_sumamt\"] + fen[\"acct_pay\"] + fen[\"acct_mulaid_pay\"]",
     "payable = fen[\"fund_pay_sumamt\"] + fen[\"acct_pay\"]", "payable: family aid dropped"),
    (LEDGER, "    if payable + fen[\"psn_cash_pay\"] != fen[\"medfee_sumamt\"]:\n", "    if False:\n",
     "settlement: need not balance"),
    (LEDGER, "Posting(account, amount, 0) if amount > 0 else", "Posting(account, amount, 0) if amount >= 0 else",
     "lines: zero a debit (equivalent?)"),
    (LEDGER, "(f\"inst:{institution}:cash\", -fen[\"psn_cash_pay\"]),", "",
     "postings: institution's cash dropped"),
    (LEDGER, "acct_pay=fen[\"acct_pay\"] + fen[\"acct_mulaid_pay\"],", "acct_pay=fen[\"acct_pay\"],",
     "entry: acct_pay without family aid"),
    (LEDGER, "book_date=setl_time.astimezone(SHANGHAI).date()", "book_date=setl_time.date()",
     "book date: in the sender's offset"),
    (LEDGER, "return (self.count >= other.count and", "return (self.count > other.count and",
     "dominates: strict on count"),
    (LEDGER, "and abs(self.medfee_sumamt) >= abs(other.medfee_sumamt)", "and self.medfee_sumamt >= other.medfee_sumamt",
     "dominates: signed medfee"),
    (LEDGER, "and abs(self.fund_pay_sumamt) >= abs(other.fund_pay_sumamt)", "",
     "dominates: fund pay ignored"),
    (LEDGER, "and abs(self.acct_pay) >= abs(other.acct_pay))", ")", "dominates: acct_pay ignored"),
    (LEDGER, "self.fund_pay_sumamt + other.fund_pay_sumamt, self.acct_pay + other.acct_pay)",
     "self.fund_pay_sumamt + other.fund_pay_sumamt, self.acct_pay)", "totals: acct_pay not added"),
    (LEDGER, "if centre_totals == institution_totals and not differences:", "if centre_totals == institution_totals:",
     "reconcile: balanced with differing lines"),
    (LEDGER, "verdict = kinds.pop() if len(kinds) == 1 else \"mismatch\"", "verdict = kinds.pop()",
     "reconcile: mixed differences not mismatch"),
    (LEDGER, "            if detail.setl_id in theirs:", "            if False:",
     "reconcile: a line sent twice"),
    (LEDGER, "elif mine.totals() != other.totals():", "elif mine.medfee_sumamt != other.medfee_sumamt:",
     "reconcile: only medfee compared per line"),
    # ---------------------------------------------------------------- clearing
    (CLEARING, "amounts[\"acct_pay\"] = to_fen(result[\"acct_pay\"]) + to_fen(result[\"acct_mulaid_pay\"])",
     "amounts[\"acct_pay\"] = to_fen(result[\"acct_pay\"])", "family aid not owed"),
    (CLEARING, "amounts[\"settlements\"] = -1 if reversal else 1", "amounts[\"settlements\"] = 1",
     "reversal counted as a settlement"),
    (CLEARING, "1 if reversal and own > ym else 0", "1 if reversal else 0", "every reversal an adjustment"),
    (CLEARING, "ym = month_of(result[\"orig_setl_time\"] if reversal else result[\"setl_time\"])",
     "ym = month_of(result[\"setl_time\"])", "reversal in its own month"),
    (CLEARING, "        if item.setl_id in seen:\n            continue\n", "", "fold: counted twice"),
    (CLEARING, "return flow[\"fund_pay_sumamt\"] + flow[\"acct_pay\"]", "return flow[\"fund_pay_sumamt\"]",
     "owed: accounts dropped"),
    (CLEARING, "\"net_to_a\": to_yuan(owed(a_to_b) - owed(b_to_a))", "\"net_to_a\": to_yuan(owed(b_to_a) - owed(a_to_b))",
     "net: sign flipped"),
    (CLEARING, "    if insured == treatment:\n        return None\n", "", "local settlements cleared"),
    (CLEARING, "astimezone(SHANGHAI).strftime", "strftime", "month in the sender's offset"),
    # ---------------------------------------------------------------- gongji simulate's tally
    (STUDY, "            if setl_id in self.seen:", "            if False:", "tally: a resend counted again"),
    (STUDY, 'COUNTED = ("settlement", "reversal")', 'COUNTED = ("settlement",)', "tally: reversals left out"),
    (STUDY, "return ordered[max(rank, 1) - 1]", "return ordered[min(rank, len(ordered) - 1)]",
     "percentile: rank off by one"),
    (STUDY, "quantize(Decimal(1), ROUND_HALF_UP))", "quantize(Decimal(1), 'ROUND_HALF_EVEN'))", "mean: half-even"),
    (STUDY, "if cap and paid >= cap]", "if cap and paid > cap]", "caps: at the cap not counted"),
    (STUDY, '        if kind == "settlement":  # a reversal', '        if True:  # a reversal',
     "tally: a reversal's month counted"),
]

# Survivors judged equivalent (no input tells them apart), with the reason.
EQUIVALENT = {
    "overlmt: >= (equivalent?)": "pric == pric_uplmt_amt gives (pric - limit) × cnt = 0: overlmt 0 either way",
    "to_yuan: 0 as 0E-2": "Decimal(0).scaleb(-2) is Decimal('0.00'), the shared zero itself: it only saves building one",
    "lines: zero a debit (equivalent?)": "zero amounts are dropped by `if amount` before the comparison is made",
    "general: fund cap note at equality": "the same money; when both caps leave the same amount the note names "
                                          "the outpatient cap, the mutant the fund cap as well: both true",
    "chronic: fund cap note at equality": "as for general outpatient: a note, not a figure",
    "inpatient: over_cap may go negative": "pooling < by_ratio means pooling <= base × ratio − 0.5, so "
                                           "pooling ÷ ratio rounds to at most base (ratio <= 1): never below 0",
    "account: eligible may go negative": "the funds pay at most the in-scope amount (each layer on what the one "
                                         "before left, ratios <= 1), and non-medical lines are outside it",
    "family aid: negative availability": "available = the holder's balance + what is held, neither ever below 0 "
                                         "(a hold never overdraws: SHORT; an account pays at most its balance)",
    "marks: also for no increase": "planned holds move (amount != expected) but for a retried reversal's refund "
                                   "of a hold already refunded: a pending mark that settles nothing",
    "stray: the current holder too": "the hold goes to 0 and then to the new amount in the same pass: the same "
                                     "end state in two writes",
    "stray: move of nothing": "a hold from 0 to 0 changes nothing (store contract: "
                              "test_a_hold_to_the_amount_already_held_changes_nothing)",
    "hold: moved when unchanged": "a hold to the amount held changes nothing in the store; the holder's own later "
                                  "events in the batch go to the next pass: the same results",
    "holds: written at a failed position": "before the holds a position fails only for a plan that cannot be "
                                           "decided yet (no holds) or a refusal in the optimistic pass, which "
                                           "defers every family claim: a failed position has no hold to write",
    "hold: zero kept as a field": "a field holding \"0\" reads as nothing held, exactly as a deleted one: the "
                                  "stores agree through the interface (only the hash keeps a field)",
}


def run(runs: list[list[str]]) -> int:
    """The first non-zero pytest exit code of `runs`, or 0 when every run passes."""
    for tests in runs:
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header",
                   "--timeout=120", *tests]
        code = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if code == 5:  # pytest collected nothing: a selection that went stale, not a kill
            raise SystemExit(f"no tests ran: {' '.join(tests)}")
        if code != 0:
            return code
    return 0


def main(argv: list[str]) -> int:
    full = "--full" in argv
    words = [word for word in argv if not word.startswith("--")]
    chosen = [m for m in MUTANTS if not words or any(w in m[0] or w in m[3] for w in words)]
    for path, old, _, label in chosen:  # every mutant must apply, once: check before touching anything
        count = (ROOT / path).read_text().count(old)
        if count != 1:
            raise SystemExit(f"{path}: {label!r}: the original text occurs {count} times")
    tally: dict[str, list[int]] = {}
    survivors = []
    for path, old, new, label in chosen:
        file = ROOT / path
        source = file.read_text()
        started = time.monotonic()
        try:
            file.write_text(source.replace(old, new))
            code = run((FULL if full else TESTS)[path])
        finally:
            file.write_text(source)
        killed = code != 0  # 1: a test failed; 2–4: the mutant broke collection, also a kill
        tally.setdefault(path, [0, 0])[0 if killed else 1] += 1
        verdict = "killed" if killed else "EQUIVALENT" if label in EQUIVALENT else "SURVIVED"
        print(f"{verdict:10} {time.monotonic() - started:5.1f}s  {path.removeprefix(PKG)}: {label}", flush=True)
        if not killed:
            survivors.append((path, label))
    print()
    for path, (killed, survived) in tally.items():
        print(f"{path.removeprefix(PKG):28} {killed + survived:3} mutants, {killed:3} killed, {survived:2} survived")
    real = [(path, label) for path, label in survivors if label not in EQUIVALENT]
    for path, label in survivors:
        if label in EQUIVALENT:
            print(f"equivalent: {label}: {EQUIVALENT[label]}")
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
