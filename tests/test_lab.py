"""``mailstack lab`` end to end, as root, through the real CLI: up (idempotent), check
(all green, every output format's exit code), status, the faults the issue names, and
down (nothing left behind).

The lab runs in its own namespace (``mslabt<random>``) with a state directory under
/var/lib (OpenDKIM refuses keys below world-writable /tmp), so it never meets the
developer's own ``mailstack lab`` in ``mslab``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack import plan as planning
from mailstack.config import stackfile
from mailstack.lab import binaries, netns, roles
from mailstack.lab.postfix import wait_for
from mailstack.lab.recipient import received
from mailstack.lab.state import LabState
from mailstack.lab.topology import from_stack
from tests import project
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Unique per run: the whole suite may run in several sessions at once on one machine,
#: and a second run's `lab down` must never reach this run's processes.
NAMESPACE = f"mslabt{uuid.uuid4().hex[:6]}"
STACK_FILE = project.stack_path("lab")
#: The lab runs on a copy of a real zone: every check must pass on top of what is there.
SEED = Path(__file__).parent / "zones" / "acme.test.zone"
E2E_IDS = {
    "e2e.outbound.delivery", "e2e.outbound.spf", "e2e.outbound.dkim", "e2e.outbound.dkim-opendkim",
    "e2e.outbound.dmarc", "e2e.inbound.to", "e2e.inbound.cc", "e2e.inbound.bcc",
}


def mailstack(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "mailstack.cli", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    if check and result.returncode:
        raise AssertionError(f"mailstack {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def in_lab(program: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a program inside the lab's namespace, by its resolved path (PATH may lack /usr/sbin)."""
    path = program if os.path.isabs(program) else binaries.binary(program)
    return subprocess.run([binaries.binary("ip"), "netns", "exec", NAMESPACE, path, *args], capture_output=True, text=True,
                          input=input, timeout=300)


@pytest.fixture(scope="module")
def lab() -> Iterator[Path]:
    require_root()
    for binary in ("named", "postfix", "opendkim", "opendkim-testmsg"):
        require_binary(binary)
    state_dir = Path("/var/lib/mailstack-lab-tests") / uuid.uuid4().hex[:8]
    state_dir.parent.mkdir(mode=0o755, exist_ok=True)
    common = ("--state-dir", str(state_dir), "--namespace", NAMESPACE)
    try:
        mailstack("lab", "up", *common, "--seed-zone", str(SEED), check=True)
        yield state_dir
    finally:
        mailstack("lab", "down", "--purge", *common)
        assert not netns.exists(NAMESPACE)
        shutil.rmtree(state_dir, ignore_errors=True)


def opts(state_dir: Path) -> tuple[str, ...]:
    return ("--state-dir", str(state_dir), "--namespace", NAMESPACE)


def check_json(state_dir: Path, *extra: str) -> tuple[int, list[dict[str, str]]]:
    result = mailstack("lab", "check", "--format", "json", *opts(state_dir), *extra)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)["checks"]


def test_up_is_idempotent_and_status_reads_the_records_back(lab: Path) -> None:
    before = {p.role: p.pid for p in LabState.load(lab).processes}
    assert set(before) == {"bind", "odoo", "recipient", "opendkim", "postfix", "aliasd"}
    again = mailstack("lab", "up", *opts(lab), check=True)
    assert "already up" in again.stdout and "5 same, 8 unmanaged" in again.stdout
    assert {p.role: p.pid for p in LabState.load(lab).processes} == before
    status = mailstack("lab", "status", *opts(lab), check=True)
    for line in ("served  acme.test MX 10 mx1.acme.test", "served  lab._domainkey.acme.test TXT v=DKIM1", "served  mx1.acme.test A 127.0.40.10"):
        assert line in status.stdout
    assert "ABSENT" not in status.stdout and "NOT RUNNING" not in status.stdout


def dig(name: str, rdtype: str) -> list[str]:
    """What the lab's BIND answers, asked with dig inside the namespace (not our code)."""
    result = in_lab("dig", "+short", "+norecurse", "@127.0.40.2", name, rdtype)
    assert result.returncode == 0, result.stderr
    return sorted(line for line in result.stdout.splitlines() if line)


def test_the_seeded_zones_records_are_served_beside_the_plan(lab: Path) -> None:
    assert dig("acme.test", "TXT") == sorted([
        '"MS=ms48213579"', '"facebook-domain-verification=w1x2y3z4a5b6c7d8e9f0g1h2i3j4k5"',
        '"google-site-verification=3Kq1xR0yHc9Jd2m6wQp0Zs8aVbNtLfU4eGiO7kYhXcM"', '"v=spf1 ip4:127.0.40.10 -all"',
    ])
    assert dig("acme.test", "MX") == ["10 mx1.acme.test."]
    assert dig("www.acme.test", "CNAME") == ["acme-web.pages.example."]
    assert dig("anything.acme.test", "A") == ["192.0.2.80"], "the wildcard"
    assert dig("support.acme.test", "MX") == ["10 mx.helpdesk.example."]
    assert dig("support.acme.test", "TXT") == ['"v=spf1 include:mail.helpdesk.example ~all"']
    assert dig("acme.test", "CAA") == ['0 iodef "mailto:security@acme.test"', '0 issue "letsencrypt.org"']
    assert dig("acme.test", "SOA")[0].split()[2] == "2051234568", "the seed's serial, bumped once by the one update"


def test_check_is_all_green_with_every_e2e_probe(lab: Path) -> None:
    code, findings = check_json(lab)
    bad = [f for f in findings if f["status"] in ("fail", "error", "warn")]
    assert bad == [] and code == 0
    assert [f["status"] for f in findings if f["id"] == "e2e.inbound.imap"] == ["skip"]  # the lab stack is gateway mode
    odoo = [f for f in findings if f["id"].split(".")[0] == "odoo" and f["id"] != "odoo.sending"]
    assert odoo and all(f["status"] in ("pass", "skip") for f in odoo), "Odoo's side is read and matches the stack"
    e2e = [f for f in findings if f["id"].startswith("e2e.") and f["status"] != "skip"]
    assert {f["id"] for f in e2e} == E2E_IDS and all(f["status"] == "pass" for f in e2e)
    inbound = [f for f in e2e if f["id"].startswith("e2e.inbound.")]
    assert len(inbound) == 6, "two aliases, each as To, Cc and Bcc"
    assert all("byte-identical" in f["summary"] for f in inbound)
    # every probe was unique, and the recipient recorded the outbound one with verdicts
    spool = [e for e in received(lab / "recipient" / "spool") if "mailstack-e2e-out" in e["message_id"]]
    assert len({e["message_id"] for e in spool}) == len(spool) >= 1
    verdict = spool[-1]["verdict"]
    assert (verdict["spf"], verdict["dmarc"], verdict["opendkim"]) == ("pass", "pass", "pass")
    assert spool[-1]["client_ip"] == "127.0.40.10" and spool[-1]["mail_from"] == "bounce@acme.test"


def test_check_takes_mailstack_checks_output_options(lab: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    result = mailstack("lab", "check", "--only", "e2e", "--format", "junit", "--output", str(report), *opts(lab))
    assert result.returncode == 0, result.stdout + result.stderr
    suites = ET.parse(report).getroot()
    assert suites.iter("testcase") and not list(suites.iter("failure")) and not list(suites.iter("error"))
    sarif = mailstack("lab", "check", "--only", "e2e", "--format", "sarif", *opts(lab))
    assert sarif.returncode == 0 and json.loads(sarif.stdout)["version"] == "2.1.0"


def test_recipient_verdicts_fail_a_forged_message(lab: Path) -> None:
    """The verifier is not a rubber stamp: a message signed with another key, sent from
    an address SPF does not list, fails SPF, both DKIM verifiers and DMARC."""
    message_id = f"<forged-{uuid.uuid4().hex}@acme.test>"
    script = f"""
import smtplib, dkim
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization
key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
raw = b"From: notifications@acme.test\\r\\nTo: probe@recipient.test\\r\\nSubject: forged\\r\\nMessage-ID: {message_id}\\r\\n\\r\\nforged\\r\\n"
raw = dkim.sign(raw, b"lab", b"acme.test", key, include_headers=[b"from", b"to", b"subject"]) + raw
with smtplib.SMTP("127.0.40.30", 25, source_address=("127.0.40.20", 0), local_hostname="odoo.acme.test") as c:
    c.sendmail("bounce@acme.test", ["probe@recipient.test"], raw)
"""
    sent = in_lab(sys.executable, "-c", script)
    assert sent.returncode == 0, sent.stderr
    entry = next(e for e in received(lab / "recipient" / "spool") if e["message_id"] == message_id)
    verdict = entry["verdict"]
    assert verdict["spf"] == "fail"
    assert [s["result"] for s in verdict["dkim"]] == ["fail"] and verdict["opendkim"] == "fail"
    assert verdict["dmarc"] == "fail" and verdict["dmarc_policy"] == "reject"


# 200 customers, one message each: Odoo 17's loop detection drops the 21st message one
# sender writes within 120 minutes (mail.gateway.loop.threshold/minutes, _detect_loop_sender).
SEND_MANY = """
import json, smtplib, sys
count, tag = int(sys.argv[1]), sys.argv[2]
replies = []
with smtplib.SMTP("127.0.40.10", 25, source_address=("127.0.40.30", 0), local_hostname="mx.recipient.test", timeout=60) as client:
    for n in range(count):
        raw = (f"From: customer{n}@recipient.test\\r\\nTo: sales@acme.test\\r\\nSubject: load {n}\\r\\n"
               f"Message-ID: <load-{tag}-{n}@recipient.test>\\r\\n\\r\\nmessage {n}\\r\\n").encode()
        refused = client.sendmail(f"customer{n}@recipient.test", ["sales@acme.test"], raw)
        replies.append(not refused)
print(json.dumps(replies))
"""


def test_odoo_down_while_200_arrive_then_all_delivered_exactly_once(lab: Path) -> None:
    state = LabState.load(lab)
    stack = stackfile.load(STACK_FILE)
    topology = from_stack(stack, NAMESPACE)
    maillog = lab / "gateway" / "postfix.log"
    log_start = maillog.stat().st_size
    [odoo] = [p for p in state.processes if p.role == "odoo"]
    assert odoo.stop()

    tag = uuid.uuid4().hex[:8]
    sent = in_lab(sys.executable, "-c", SEND_MANY, "200", tag)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == [True] * 200, "the gateway accepts all 200 while Odoo is down"
    queue_dir = str(lab / "gateway" / "postfix")

    def deferred() -> int:
        out = in_lab("postqueue", "-c", queue_dir, "-j").stdout
        return sum(1 for line in out.splitlines() if line.strip() and json.loads(line)["queue_name"] == "deferred")

    wait_for(lambda: deferred() == 200, 120, what="all 200 messages deferred while Odoo is down")

    standin = roles.odoo_standin(state, planning.build(stack), topology, netns=NAMESPACE)
    standin.start()
    assert standin.pid is not None
    state.record("odoo", standin.pid, str(standin.db_path))
    assert in_lab("postqueue", "-c", queue_dir, "-f").returncode == 0

    def stored() -> dict[str, int]:
        with sqlite3.connect(standin.db_path) as db:
            rows = db.execute("SELECT message_id, COUNT(*) FROM messages WHERE message_id LIKE ? GROUP BY message_id", (f"<load-{tag}-%",)).fetchall()
        return dict(rows)

    wait_for(lambda: len(stored()) == 200 and deferred() == 0, 300, what="all 200 messages in Odoo")
    counts = stored()
    assert set(counts) == {f"<load-{tag}-{n}@recipient.test>" for n in range(200)}
    assert set(counts.values()) == {1}, "each message exactly once"
    log = maillog.read_bytes()[log_start:].decode(errors="replace")
    assert "status=bounced" not in log and "status=deferred" in log
    bounces = [e for e in received(lab / "recipient" / "spool") if e["mail_from"] == ""]
    assert bounces == [], "no bounce reached the outside sender"


def test_bind_down_means_error_never_pass_and_recovers_after_restart(lab: Path) -> None:
    state = LabState.load(lab)
    [bind] = [p for p in state.processes if p.role == "bind"]
    assert bind.stop()
    code, findings = check_json(lab, "--probe-wait", "5")
    assert code == 1
    dns_groups = ("e2e", "spf", "dkim", "dmarc", "mx", "published")
    wrongly_passed = [f for f in findings if f["id"].split(".")[0] in dns_groups and f["status"] == "pass"]
    assert wrongly_passed == [], [(f["id"], f["summary"]) for f in wrongly_passed]
    e2e = [f for f in findings if f["id"].startswith("e2e.") and f["id"] != "e2e.inbound.imap"]  # imap: skipped, no DNS asked
    assert e2e and all(f["status"] == "error" for f in e2e), [(f["id"], f["status"], f["summary"]) for f in e2e]

    repaired = mailstack("lab", "up", *opts(lab), check=True)
    assert "restarted: bind" in repaired.stdout and "5 same" in repaired.stdout, "records come back from BIND's journal"
    code, findings = check_json(lab)
    assert [f for f in findings if f["status"] in ("fail", "error")] == [] and code == 0


def test_down_stops_everything_and_removes_the_namespace(lab: Path) -> None:
    processes = LabState.load(lab).processes
    result = mailstack("lab", "down", *opts(lab), check=True)
    assert f"namespace {NAMESPACE} removed" in result.stdout
    assert not any(p.alive() for p in processes)
    assert not netns.exists(NAMESPACE) and not Path("/etc/netns", NAMESPACE).exists()
    assert LabState.load(lab).processes == []
    assert (lab / "dkim" / "lab.private").stat().st_mode & 0o077 == 0, "the lab's DKIM key stays root-only"
    status = mailstack("lab", "status", *opts(lab))
    assert status.returncode == 1 and "no lab is up" in status.stdout
    # up again after down works from the kept keys (and is torn down by the fixture)
    mailstack("lab", "up", *opts(lab), check=True)
    assert os.path.exists(lab / "state.json")
