"""`gongji demo` as a newcomer runs it: the installed console script, its output read the way CI
reads it (stdout not a terminal), and nothing it started left running."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

SECONDS = 20
TIME_LIMIT = 90  # the run, the drain (at most 10 s) and stopping the service and the stack


def gongji() -> list[str]:
    script = Path(sys.executable).with_name("gongji")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gongji.cli"]


def figure(pattern: str, text: str) -> Decimal:
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{pattern!r} not in the demo's output:\n{text}"
    return Decimal(found.group(1).replace(",", ""))


def processes_under(directory: Path) -> list[str]:
    """Live processes whose working directory is in `directory`: the demo runs its broker, its
    Redis server and its settlement service in its workdir, which TMPDIR puts there."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(directory):
                found.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
    return found


def test_demo_settles_refuses_dead_letters_and_cleans_up(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*gongji(), "demo", "--seconds", str(SECONDS), "--rate", "200", "--persons", "300"],
        env={**os.environ, "TMPDIR": str(tmp_path)}, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIME_LIMIT)
    took = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{out}\nstderr:\n{result.stderr}"
    assert SECONDS <= took < TIME_LIMIT
    assert "Traceback" not in result.stderr, result.stderr

    # Not a terminal: progress lines and a plain summary, no live view's control codes.
    assert re.search(r"^\[\s*\d+ s\] settling: sent [\d,]+ on claims", out, re.MULTILINE), out
    assert "\x1b[" not in out
    assert figure(r"^results: ([\d,]+) settlements", out) > 0
    assert figure(r"^fund paid \(fund_pay_sumamt\) +[-\d,.]+ +[-\d,.]+ +([-\d,.]+)$", out) > 0
    assert figure(r"([\d,]+) rejections", out) > 0
    assert figure(r"([\d,]+) dead letters", out) > 0
    # The deliberately bad inputs are there, and each kind ended where it should.
    assert figure(r"(\d+) junk bytes", out) > 0 and figure(r"(\d+) claims with a negative amount", out) > 0
    assert re.search(r"^rejections by err_code: .*INVALID_CLAIM \d", out, re.MULTILINE), out
    assert re.search(r"^dead letters by reason: .*undecodable", out, re.MULTILINE), out
    assert figure(r"^unanswered at exit: ([\d,]+)", out) == 0
    # The clearing service ran beside settlement; the months it counted were closed into statements.
    assert figure(r"^cross-region clearing: (\d+) statement", out) > 0
    assert re.search(r"^  (152501|990100) pays (152501|990100) a net [\d,]+\.\d\d yuan", out, re.MULTILINE), out
    # The ledger booked every settlement, reversal and credit, and its books balance; its pooling
    # fund paid what the settlements say it paid.
    entries = figure(r"^fund ledger: ([\d,]+) journal entries", out)
    settled = sum(figure(rf"([\d,]+) {kind}", out) for kind in ("settlements,", "reversals,", "credits,"))
    assert entries == settled, out
    assert "every entry and every day balances" in out
    pooling = re.search(r"^  pooling fund \(hifp_pay\) +[-\d,.]+ +[-\d,.]+ +([-\d,.]+)$", out, re.MULTILINE).group(1)
    assert re.search(rf"^  pooling \(310100\): {re.escape(pooling)} yuan net$", out, re.MULTILINE), out
    # The fraud service watched the same stream; the suspended persons' refused claims are signalled.
    assert figure(r"^fraud and supervision signals: ([\d,]+) on ", out) > 0
    assert re.search(r"^fraud and supervision signals: .*SUSPENDED_BENEFITS \d", out, re.MULTILINE), out
    # The dashboard ran beside them and said where, and where its access token is (never the token).
    url, token_file = re.search(r"^gongji demo: live dashboard at (http://127\.0\.0\.1:\d+/) \(open it in a "
                                r"browser; access token in (\S+)\)$", out, re.MULTILINE).groups()

    workdir = Path(re.search(r"^gongji demo: starting in (\S+) \.\.\.$", out, re.MULTILINE).group(1))
    assert workdir.is_relative_to(tmp_path)
    assert Path(token_file) == workdir / "dashboard-token" and (Path(token_file).stat().st_mode & 0o777) == 0o600
    token = Path(token_file).read_text().strip()
    assert token not in out and token not in result.stderr
    # Persons in the fraud signals are pseudonyms; no psn_no (the run's tag, a region, 8 digits) anywhere.
    persons = re.findall(r"^  \w+ \w+ person (\S+):", out, re.MULTILINE)
    assert persons and all(re.fullmatch(r"P-[0-9a-f]{16}", p) for p in persons), persons
    psn_no = re.compile(r"d[0-9a-f]{6}(152501|990100)\d{8}")
    assert not psn_no.search(out + result.stderr), out
    for service in ("settlement", "clearing", "ledger", "fraud", "dashboard"):  # nor in the services' logs
        log = (workdir / f"{service}.log").read_text()
        assert not psn_no.search(log), (service, psn_no.search(log).group())
    served = [json.loads(line) for line in (workdir / "dashboard.log").read_text().splitlines()]
    assert any(line["msg"].startswith(f"dashboard: {url}") for line in served), served
    if not os.environ.get("GONGJI_KAFKA_BOOTSTRAP_SERVERS"):  # it ran a local stack of its own
        assert (workdir / "kafka.log").exists() and (workdir / "redis.log").exists()
    assert processes_under(tmp_path) == []
