"""The `gongji` command as a user runs it: replay of a hand-worked file, the local stack in the
background, and a bad policy file stopping start-up."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gongji.services import SERVICES

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[2]
GONGJI = [sys.executable, "-m", "gongji.cli"]


def run(*args: str, cwd: Path | None = None, env: dict | None = None, stdin: str | None = None, timeout: float = 120):
    return subprocess.run([*GONGJI, *args], cwd=cwd, env={**os.environ, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_replay_settles_the_erenhot_file_as_worked_by_hand():
    """POLICY §2–4, §8 on a small file; the figures are worked in the comments."""
    result = run("replay", str(DATA / "erenhot.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "line 19: not JSON" in result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    by_id = {}
    for event in out:
        by_id.setdefault(event.get("claim_id") or event.get("credit_id") or event["psn_no"], []).append(event)
    # A sibling is not a family account holder (家庭共济: spouse, parent, child).
    assert by_id["15250100000003"][0]["err_code"] == "MULAID_NOT_ALLOWED"
    # In-service monthly credit: 2% × 8000.00 = 160.00.
    assert by_id["K-0001-202301"][0]["amount"] == "160.00"
    # C-0001, retired, level-3 hospital: 政策范围内 1200 + (300 − 30 先行自付) = 1470.00; annual
    # deductible 1000.00; 470.00 × 65% = 305.50 pooling; personal 1194.50: own account 100.00, the
    # parent's account 160.00, cash 934.50. Resent: the identical result again.
    first, resent = by_id["C-0001"]
    assert first == resent
    assert (first["inscp_scp_amt"], first["act_pay_dedc"], first["hifp_pay"], first["pool_prop_selfpay"]) == (
        "1470.00", "1000.00", "305.50", "0.6500")
    assert (first["acct_pay"], first["acct_mulaid_pay"], first["psn_cash_pay"], first["balc"]) == (
        "100.00", "160.00", "934.50", "0.00")
    # C-0002 at a pharmacy: the 150.00 fitness card is non-medical (never from the account); the
    # 36.00 in scope goes to the deductible; the holder's account is empty after C-0001.
    c2 = by_id["C-0002"][0]
    assert (c2["fulamt_ownpay_amt"], c2["act_pay_dedc"], c2["hifp_pay"], c2["acct_pay"]) == (
        "150.00", "36.00", "0.00", "0.00")
    assert by_id["C-0003"][0]["err_code"] == "UNSUPPORTED_MED_TYPE"
    assert by_id["C-0004"][0]["err_code"] == "INVALID_CLAIM"
    assert "det_item_fee_sumamt" in by_id["C-0004"][0]["err_msg"]
    # R-0001 in 2024 reverses C-0001 (2023): amounts negated, own account refunded.
    reversal = by_id["R-0001"][0]
    assert reversal["event_type"] == "reversal" and reversal["orig_claim_id"] == "C-0001"
    assert (reversal["hifp_pay"], reversal["acct_pay"], reversal["acct_mulaid_pay"], reversal["balc"]) == (
        "-305.50", "-100.00", "-160.00", "100.00")
    assert by_id["R-0002"][0]["err_code"] == "ALREADY_REVERSED"
    assert by_id["R-0003"][0]["err_code"] == "UNKNOWN_ORIGINAL"
    # C-0005: the parent's 160.00 came back with the reversal and pays 36.00 of it.
    c5 = by_id["C-0005"][0]
    assert (c5["acct_pay"], c5["balc"]) == ("36.00", "124.00")
    # C-0006: dialysis (门诊大病, 参照住院) for a 低保 recipient at a level-3 hospital: annual deductible
    # 800.00, (5000 − 800) × 85% = 3570.00 pooling; then 医疗救助 (低保: no deductible, 70%) on the
    # 1430.00 in scope left: 1001.00; the person pays 429.00.
    c6 = by_id["C-0006"][0]
    assert (c6["act_pay_dedc"], c6["hifp_pay"], c6["maf_pay"], c6["psn_cash_pay"]) == (
        "800.00", "3570.00", "1001.00", "429.00")
    assert [row["fund_pay_type"] for row in c6["setldetail"]] == ["310100", "610100"]


def test_replay_reads_standard_input():
    lines = (DATA / "erenhot.jsonl").read_text().splitlines()[:6]
    result = run("replay", "-", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["event_type"] for line in result.stdout.splitlines()] == ["rejection", "credit"]


HOSTILE_LINES = [
    b'{"event_type": "claim", "claim_id": "X-1", "psn_no": "15250100000001", "fee_details": [{"pric": "'
    + b"1" * 40 + b'"}]}',
    b'{"event_type": "claim", "claim_id": "X-2", "fee_details": [{"cnt": ' + b"1" * 5000 + b"}]}",
    b'{"event_type": "claim", "claim_id": "X-3", "fee_details": [{"cnt": 1e999999999999999999999}]}',
    b'{"event_type": "claim", "claim_id": "X-4", "fee_details": [{"pric": NaN, "cnt": Infinity}]}',
    b"[" * 100_000,
    b'{"event_type": "person", "psn_no": "15250100000009\\u0000", "insutype": "310"}',
    b'{"event_type": "person", "psn_no": "\\ud800", "insutype": "310"}',
    b'{"event_type": "institution", "fixmedins_code": "H1 ", "fixmedins_type": "1"}',
    b'\xff\xfe{"event_type": "claim"}',
    b'{"event_type": {"nested": [[[[]]]]}, "psn_no": ["junk"]}',
    b"42",
]


def test_replay_answers_every_hostile_line_without_a_traceback(tmp_path):
    """Issue 8 item 2: each bad line is a rejection or a line on stderr; the valid lines after them
    settle exactly as they do alone."""
    valid = (DATA / "erenhot.jsonl").read_bytes().splitlines()[:9]
    clean = run("replay", "-", stdin="\n".join(line.decode() for line in valid) + "\n")
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join([*HOSTILE_LINES, *valid]) + b"\n")
    result = run("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    refused = [event for event in out if event.get("err_code") == "INVALID_CLAIM"]
    skipped = result.stderr.splitlines()
    assert len(refused) + len(skipped) == len(HOSTILE_LINES), (refused, skipped)
    assert all(line.startswith("line ") and line.endswith("skipped") for line in skipped)
    assert out[len(refused):] == [json.loads(line) for line in clean.stdout.splitlines()]


def test_replay_judges_setl_time_against_the_given_present_and_reads_the_bounds_settings():
    lines = (DATA / "erenhot.jsonl").read_text().splitlines()[:8]  # C-0001 on 2023-03-01 10:00 (+08:00)
    stdin = "\n".join(lines) + "\n"
    before = run("replay", "--now", "2023-03-01T09:50:00+08:00", "-", stdin=stdin)  # 10 minutes of tolerance
    after = run("replay", "--now", "2023-03-01T09:49:59+08:00", "-", stdin=stdin)
    assert json.loads(before.stdout.splitlines()[-1])["event_type"] == "settlement", before.stderr
    refusal = json.loads(after.stdout.splitlines()[-1])
    assert (refusal["err_code"], refusal["claim_id"]) == ("INVALID_CLAIM", "C-0001")
    assert "setl_time" in refusal["err_msg"]
    ceiling = run("replay", "-", stdin=stdin, env={"GONGJI_MAX_LINE_AMOUNT": "1199.99"})  # its line is 1200.00
    refusal = json.loads(ceiling.stdout.splitlines()[-1])
    assert refusal["err_code"] == "INVALID_CLAIM" and "GONGJI_MAX_LINE_AMOUNT" in refusal["err_msg"]
    missing = run("replay", "/nonexistent/claims.jsonl")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "claims.jsonl" in missing.stderr


def test_replay_settles_a_pharmacy_without_a_level_in_the_pharmacy_band():
    """Issue 8 item 9: a retail pharmacy has no medins_lv. Erenhot, in-service, 1100.00 at the
    pharmacy: deductible 1000.00, the pharmacy band's 70% of 100.00 = 70.00."""
    events = [
        {"event_type": "institution", "fixmedins_code": "P15250100099", "fixmedins_name": "二连浩特市药店",
         "fixmedins_type": "2", "grassroots": False, "admdvs": "152501"},
        {"event_type": "person", "psn_no": "15250100000001", "insutype": "310", "psn_type": "1101",
         "insu_admdvs": "152501", "psn_insu_stas": "1"},
        {"event_type": "claim", "claim_id": "C-PH", "mdtrt_id": "M-PH", "psn_no": "15250100000001",
         "fixmedins_code": "P15250100099", "med_type": "11", "insutype": "310",
         "setl_time": "2023-03-02T09:00:00+08:00", "acct_used_flag": "0",
         "fee_details": [{"feedetl_sn": "1", "med_list_codg": "XB02", "list_type": "101", "chrgitm_lv": "01",
                          "det_item_fee_sumamt": "1100.00", "cnt": "1", "pric": "1100.00"}]},
    ]
    result = run("replay", "-", stdin="\n".join(json.dumps(event, ensure_ascii=False) for event in events) + "\n")
    assert result.returncode == 0, result.stderr
    [settled] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (settled["event_type"], settled["act_pay_dedc"], settled["hifp_pay"], settled["pool_prop_selfpay"]) == (
        "settlement", "1000.00", "70.00", "0.7000")


def test_a_bad_policy_file_stops_start_up_naming_file_and_field(tmp_path):
    shipped = Path(__file__).parents[2] / "services/gongji/settlement/policies"
    for path in shipped.glob("*.toml"):
        shutil.copy(path, tmp_path)
    bad = tmp_path / "990100.toml"
    bad.write_text(bad.read_text().replace('annual_cap = { in_service = "1500.00"', 'annual_cap = { in_service = "abc"'))
    result = run("--policies", str(tmp_path), "replay", str(DATA / "erenhot.jsonl"))
    assert result.returncode != 0
    assert "990100.toml" in result.stderr and "annual_cap.in_service" in result.stderr
    assert result.stdout == ""


def dashboard_status(url: str, token: str | None = None, timeout: float = 30.0) -> int:
    """The status of the dashboard's snapshot, once it answers (it starts in the background)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url + "snapshot.json", headers=headers)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:  # not listening yet
            assert time.monotonic() < deadline, f"the dashboard at {url} never answered"
            time.sleep(0.2)


def gateway_2207(url: str, secret: Path) -> dict:
    """A 2207 for a person nobody registered, signed by the stack's caller (curl would do the same)."""
    import urllib.request

    from gongji.gateway.callers import Caller

    body = json.dumps({"infno": "2207", "msgid": "E2E0001", "fixmedins_code": "H152501000",
                       "inf_time": "2023-03-01 10:15:00", "input": {"data": {
                           "psn_no": "nobody", "mdtrt_id": "M1", "med_type": "11", "feedetail": [
                               {"feedetl_sn": "1", "med_list_codg": "XA01", "list_type": "101", "chrgitm_lv": "01",
                                "det_item_fee_sumamt": "7.00", "cnt": 20, "pric": "0.35"}]}}}).encode()
    caller = Caller("local-his", secret.read_bytes().rstrip(b"\r\n"))
    headers = {**caller.headers(int(time.time()), body), "Content-Type": "application/json"}
    # `stack up` returns once the servers answer; the gateway may still be binding its port
    from gongji.local.processes import port_open

    port = int(url.rstrip("/").rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while not port_open(port):
        assert time.monotonic() < deadline, f"the gateway at {url} never listened"
        time.sleep(0.1)  # polling for the positive marker: the port accepts connections
    # settlement may still be joining its group: the gateway answers "pending" until it settles
    for _ in range(60):
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30) as response:
            answer = json.loads(response.read())
        if "pending" not in answer["err_msg"]:
            return answer
    return answer


def test_stack_up_serves_and_down_stops(tmp_path):
    env = {"GONGJI_STATE_DIR": str(tmp_path / "state")}
    up = run("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        fields = dict(part.split("=", 1) for part in up.stdout.split() if "=" in part)
        kafka_port = int(fields["GONGJI_KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
        redis_port = int(fields["GONGJI_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        for port in (kafka_port, redis_port):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        again = run("stack", "up", env=env)
        assert "already running" in again.stdout
        # The dashboard runs with the token the stack generated (0600), printed as where it is, not what.
        url, token_file = re.search(r"^dashboard: (http://127\.0\.0\.1:\d+/) \(access token in (\S+)\)$",
                                    up.stdout, re.MULTILINE).groups()
        assert Path(token_file) == (tmp_path / "state" / "dashboard-token").resolve()
        assert Path(token_file).stat().st_mode & 0o777 == 0o600
        token = Path(token_file).read_text().strip()
        assert token not in up.stdout + up.stderr + again.stdout and token_file in again.stdout
        assert dashboard_status(url) == 401 and dashboard_status(url, token) == 200
        # The gateway answers a request its caller signs, through settlement (the person is not
        # registered on a bare stack: a rejection in the national shape is the whole round trip).
        assert re.search(r"^gateway: GONGJI_GATEWAY_URL=http://127\.0\.0\.1:\d+/ GONGJI_GATEWAY_CALLER=local-his "
                         r"GONGJI_GATEWAY_CALLER_SECRET_FILE=\S+$", up.stdout, re.MULTILINE), up.stdout
        gateway, secret = fields["GONGJI_GATEWAY_URL"], Path(fields["GONGJI_GATEWAY_CALLER_SECRET_FILE"])
        assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text().strip() not in up.stdout
        answer = gateway_2207(gateway, secret)
        assert answer["infcode"] == -1 and answer["err_msg"].startswith("UNKNOWN_PERSON"), answer
        # `gongji call` beside the stack: its gateway and caller found on their own, msgid made.
        request = {"infno": "2207", "fixmedins_code": "H152501000", "input": {"data": {
            "psn_no": "nobody", "mdtrt_id": "M2", "med_type": "11", "setl_time": "2023-03-01 10:20:00",
            "feedetail": [{"feedetl_sn": "1", "med_list_codg": "XA01", "list_type": "101", "chrgitm_lv": "01",
                           "det_item_fee_sumamt": "7.00", "cnt": 20, "pric": "0.35"}]}}}
        called = run("call", "-", env=env, stdin=json.dumps(request))
        assert called.returncode == 1 and json.loads(called.stdout)["err_msg"].startswith("UNKNOWN_PERSON"), called
        assert re.fullmatch(r"msgid \d{14}[0-9a-f]{16} \(send the same to ask again\)\n", called.stderr), called.stderr
        # The services run on the stack too, in the background.
        servers = json.loads((tmp_path / "state" / "stack.json").read_text())["servers"]
        for service in SERVICES:
            cmdline = Path(f"/proc/{servers[service]['pid']}/cmdline").read_bytes().split(b"\0")
            assert [b"run", service.encode()] == cmdline[-3:-1], cmdline
        # Secured by default: the printout names the password files, never a password; each service
        # process has its own credentials in its environment (a password file) and no other's.
        secrets = tmp_path / "state" / "secrets"
        passwords = [path.read_text() for path in secrets.iterdir()]
        assert fields["GONGJI_REDIS_PASSWORD_FILE"] == str(secrets / "redis-admin")
        assert fields["GONGJI_DATABASE_PASSWORD_FILE"] == str(secrets / "gongji_ledger_owner")
        recorded = up.stdout + again.stdout + (tmp_path / "state" / "stack.json").read_text()
        assert passwords and not [password for password in passwords if password in recorded]
        own = {"settlement": {"redis-settlement", "input-keys.toml"}, "clearing": {"redis-clearing"},
               "ledger": {"gongji_ledger"}, "dashboard": {"dashboard-token", "pseudonym-key", "gongji_ledger_reader"},
               "gateway": {"redis-gateway", "input-keys.toml", "gateway-callers.toml"}}
        for service in SERVICES:
            environ = dict(item.decode().split("=", 1) for item in
                           Path(f"/proc/{servers[service]['pid']}/environ").read_bytes().split(b"\0") if b"=" in item)
            assert not [password for password in passwords if any(password in v for v in environ.values())]
            files = {Path(value).name for name, value in environ.items()
                     if name.startswith("GONGJI_") and name.endswith("_FILE") and value}
            assert files == own.get(service, set()), (service, files)
        # The ledger's database is the stack's PostgreSQL; once the ledger has migrated it, the
        # ledger commands find it on their own.
        assert fields["GONGJI_DATABASE_URL"].startswith("postgresql://")
        for _ in range(100):
            check = run("ledger", "check", env=env)
            if check.returncode == 0:
                break
            time.sleep(0.2)
        assert check.returncode == 0 and "every entry and every day balances" in check.stdout, check.stderr
        # Kafka only over TLS, and every service through the terminator with a certificate of its own.
        assert fields["GONGJI_KAFKA_SECURITY_PROTOCOL"] == "SSL", up.stdout
        terminator = tmp_path / "state" / "kafka-tls.log"
        deadline = time.monotonic() + 60
        while not all(f"connection from gongji-{service}\n" in terminator.read_text() for service in SERVICES):
            assert time.monotonic() < deadline, terminator.read_text()[-3000:]
            time.sleep(0.2)
        # `gongji topics create` finds the running stack on its own.
        topics = run("topics", "create", env=env)
        assert topics.returncode == 0, topics.stderr
        listed = dict(line.split()[:2] for line in topics.stdout.splitlines()[1:])
        assert set(listed.values()) <= {"created", "exists"}
        assert {"claims", "settlements", "dead-letters", "clearing.statements", "fraud.signals"} <= set(listed)
    finally:
        down = run("stack", "down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    for service in SERVICES:
        pid = servers[service]["pid"]
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower() \
            or Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    for port in (kafka_port, redis_port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            raise AssertionError(f"port {port} still answers after stack down")
        except OSError:
            pass


def test_bench_prints_throughput_latency_and_cpu(tmp_path):
    """`gongji bench` at a small size: the figures it exists for come out (not their values: speed
    is measured by the benchmark itself, never asserted in a test)."""
    result = run("bench", "--claims", "10000", "--persons", "2000", "--workers", "1", "--rate", "500",
                 env={"TMPDIR": str(tmp_path)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "queued claims settled in" in result.stdout and "claims/s end to end" in result.stdout
    assert "the service spent" in result.stdout and "µs of CPU a claim" in result.stdout
    # the latency phase ran with the downstream services consuming, end to end and to the ledger's row
    latency = re.search(r"bench: latency at 500 claims/s \(\d+ claims in [\d.]+ s, with clearing, fraud, ledger "
                        r"consuming\), claim sent → result read on settlements: p50 [\d.]+, p95 [\d.]+, p99 [\d.]+, "
                        r"max [\d.]+ ms", result.stdout)
    assert latency, result.stdout
    assert re.search(r"bench: latency claim sent → ledger row \(\d+ entries\): p50 [\d.]+", result.stdout)
    assert re.search(r"bench: CPU from the first send to the last result .*ledger service [\d.]+ s, clearing "
                     r"service [\d.]+ s, fraud service [\d.]+ s", result.stdout)
    # the raw loop drained the very burst the service then drained, and the ratio is printed
    queued = re.search(r"bench: throughput: (\d+) queued claims", result.stdout)
    raw = re.search(r"bench: raw loop .*: (\d+) claims in [\d.]+ s = [\d,]+ claims/s", result.stdout)
    assert queued and raw and raw.group(1) == queued.group(1), result.stdout
    assert re.search(r"bench: settlement / raw loop = [\d,]+ / [\d,]+ claims/s = \d+\.\d\d", result.stdout)


def test_bench_gateway_prints_its_figures_and_every_answer_is_counted(tmp_path):
    """`gongji bench --gateway` at a tiny size: signed 2207 requests over HTTP to the gateway it
    starts; the rate, the latency percentiles and the answers come out, and the answers counted add
    up to the requests sent (their speed is the benchmark's to measure, not a test's)."""
    import re

    result = run("bench", "--gateway", "--persons", "60", "--workers", "1", "--gateway-requests", "40",
                 "--gateway-rate", "40", "--gateway-concurrency", "8", env={"TMPDIR": str(tmp_path)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    sent = re.search(r"bench: gateway: 40 signed 2207 requests at 40 requests/s, at most 8 in flight, (\d+) persons "
                     r"over (\d+) of (\d+) partitions", out)
    assert sent and int(sent[1]) > 1 and int(sent[2]) > 1, out
    done = re.search(r"bench: gateway: (\d+) requests in [\d.]+ s = [\d,]+ requests/s", out)
    assert done and int(done[1]) == 40, out
    assert re.search(r"latency \(send to answer\): p50 [\d.]+ ms, p90 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms", out), out
    answers = re.search(r"bench: gateway answers: (.*)", out)[1]
    counts = {kind: int(count) for kind, count in re.findall(r"([^,:]+): (\d+)", answers)}
    assert sum(counts.values()) == 40 and counts.get("infcode 0", 0) > 0, answers
    assert "gateway time by stage" in out and "CPU during the requests: gateway" in out


def test_replay_in_batches_gives_what_replay_one_at_a_time_gives(tmp_path):
    """`gongji replay --batch N` settles through the service's batching path: a synthetic stream
    with family aid, reversals and resends gives the same lines for N = 1, 7 and 500."""
    from gongji.local.synthetic import Traffic

    traffic = Traffic(persons=120, seed=4, family=0.5)
    events = traffic.registry() + traffic.openings() + list(traffic.stream(1500, reversals=0.05, resends=0.05))
    path = tmp_path / "stream.jsonl"
    path.write_text("".join(json.dumps({"event_type": kind, **data}, default=str) + "\n" for kind, data in events))
    outputs = {}
    for size in ("1", "7", "500"):
        result = run("replay", "--batch", size, str(path))
        assert result.returncode == 0, result.stderr
        outputs[size] = result.stdout
    assert sum(1 for line in outputs["1"].splitlines() if '"acct_mulaid_pay": "0.00"' not in line
               and '"acct_mulaid_pay"' in line) > 20
    assert outputs["7"] == outputs["1"] and outputs["500"] == outputs["1"]
    refused = run("replay", "--batch", "0", str(path))
    assert refused.returncode == 2 and "--batch must be at least 1" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_publish_and_tail_on_the_stack_agree_with_replay(tmp_path):
    """Done when (issue 11): `gongji publish` of the shipped sample to `gongji stack up` (signed input
    required there) and `gongji tail settlements` give what `gongji replay` gives, but for the line
    publish refused and named: the README's example, as it is written there."""
    env = {"GONGJI_STATE_DIR": str(tmp_path / "state")}
    sample = "docs/samples/claims.jsonl"  # from the checkout's root, as the README runs it
    assert "gongji publish docs/samples/claims.jsonl\n" in (ROOT / "README.md").read_text()
    assert "gongji tail settlements --from-beginning --until-idle 5\n" in (ROOT / "README.md").read_text()
    up = run("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        published = run("publish", sample, cwd=ROOT, env=env, timeout=300)
        assert published.returncode == 1, published.stderr[-3000:]  # one line refused: the rest went
        assert published.stderr.splitlines()[0].startswith(
            "line 14: invalid claim: fee_details.0.det_item_fee_sumamt"), published.stderr[-3000:]
        assert published.stderr.splitlines()[-1].startswith("gongji publish: 19 sent (")
        tailed = run("tail", "settlements", "--from-beginning", "--until-idle", "5", env=env)
        assert tailed.returncode == 0, tailed.stderr
        replayed = run("replay", sample, cwd=ROOT)
        def same(lines):  # the fields in any order (tail lists them in the schema's)
            return sorted(json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in lines)

        expected = [line for line in replayed.stdout.splitlines() if '"INVALID_CLAIM"' not in line]
        assert same(tailed.stdout.splitlines()) == same(expected) and len(expected) == 12
    finally:
        run("stack", "down", env=env)
