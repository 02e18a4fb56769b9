"""``mailstack lab`` walks a DKIM key rotation through its phases, as root, through the
real CLI as a user does: each ``lab up`` is one apply (``pulumi up``), the stack file
edited between them.

A copy of the lab stack (``stacks/Pulumi.lab.yaml``) declares ``dkim.selector: lab2``
next to ``dkim.previous: lab`` with a 30 s TTL and a short ``dkim.retireMargin``, so
the retire time comes within the test by the real clock:

publish  first ``lab up``: BIND did not serve lab2 before it -> lab signs
         (the independent receiver: dkim=pass s=lab); a message is held in the
         gateway's queue
switch   second ``lab up``: lab2 served -> switch recorded, OpenDKIM restarted on
         lab2's tables, Postfix and its queue kept (dkim=pass s=lab2; the held
         message, released, still verifies with s=lab)
early    ``dkim.previous`` dropped before the retire time: exit 2 naming it and the
         time; the old record still served (``dig``), the state unchanged
retire   after switch + TTL + margin: ``lab check`` warns (dkim.rotation)
steady   ``dkim.previous`` dropped (with ``dns.allowDelete``): the old record gone
         (``dig``), mail s=lab2 passes, ``lab check`` all green

The verdicts are the receiver's own Authentication-Results (OpenDKIM/OpenDMARC), read
with ``authres``. Own namespace (``mslabr<random>``) and state directory.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstack.checks.probes.e2e import MaildirIndex
from mailstack.checks.probes.verdicts import receiver_verdict
from mailstack.lab import binaries, netns, smtp_tools
from mailstack.lab.postfix import wait_for
from mailstack.lab.receiver import AUTHSERV_ID
from mailstack.lab.state import LabState
from mailstack.rules.dkim_rotation import when
from tests import project
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = f"mslabr{uuid.uuid4().hex[:6]}"
STATE_DIR = Path("/var/lib/mailstack-lab-tests") / f"r{uuid.uuid4().hex[:7]}"
#: Seconds after the old record's TTL (30 s) before it may go: long enough that the
#: early drop is surely refused, short enough to wait for.
MARGIN = 45
TTL = 30
#: The lab stack's addresses (stacks/Pulumi.lab.yaml).
BIND = "127.0.40.2"
GATEWAY = "127.0.40.10"
ODOO = "127.0.40.20"
OLD, NEW = "lab._domainkey.acme.test", "lab2._domainkey.acme.test"


def mailstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailstack.cli", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


def in_lab(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binaries.binary("ip"), "netns", "exec", NAMESPACE, binaries.binary(program), *args],
                          capture_output=True, text=True, timeout=120)


def dig(name: str) -> str:
    """What the lab's BIND serves at ``name`` (TXT), asked with dig: not our code."""
    result = in_lab("dig", "+short", "+norecurse", f"@{BIND}", name, "TXT")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@dataclass
class Rehearsal:
    stack_file: Path
    declared: dict[str, Any]

    def opts(self) -> tuple[str, ...]:
        return ("--state-dir", str(STATE_DIR), "--namespace", NAMESPACE)

    def declare(self, previous: str | None, *, allow_delete: bool = False) -> None:
        """Edit the stack file as a user does between two applies."""
        config = json.loads(json.dumps(self.declared))
        dkim = {"selector": "lab2", "bits": 2048, **({"previous": previous, "retireMargin": MARGIN} if previous else {})}
        config["config"]["mailstack:dkim"] = dkim
        config["config"]["mailstack:dns"]["ttl"] = TTL
        if allow_delete:
            config["config"]["mailstack:dns"]["allowDelete"] = True
        self.stack_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return mailstack("lab", "up", "--stack-file", str(self.stack_file), *self.opts(), *extra)

    @property
    def root(self) -> Path:
        return LabState.load(STATE_DIR).stack_root

    @property
    def rotation_file(self) -> Path:
        return self.root / "dkim-rotation.json"

    def rotation(self) -> dict[str, Any]:
        recorded: dict[str, Any] = json.loads(self.rotation_file.read_text())
        return recorded

    def check(self, *only: str) -> tuple[int, dict[str, list[dict[str, str]]]]:
        result = mailstack("lab", "check", "--format", "json", *self.opts(), *(f"--only={g}" for g in only))
        assert result.stdout, result.stderr
        found: dict[str, list[dict[str, str]]] = {}
        for finding in json.loads(result.stdout)["checks"]:
            found.setdefault(finding["id"], []).append(finding)
        return result.returncode, found

    def postfix(self, program: str, *args: str) -> str:
        result = in_lab(program, "-c", str(self.root / "gateway1" / "postfix"), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def hold(self, held: bool) -> None:
        """Keep outbound mail in the gateway's queue (``defer_transports``), or let it go."""
        self.postfix("postconf", "-e", f"defer_transports={'smtp' if held else ''}")
        self.postfix("postfix", "reload")
        if not held:
            self.postfix("postqueue", "-f")

    def submit(self, tag: str) -> str:
        """One message from Odoo's address to the gateway's submission port."""
        message_id = f"<rotation-{tag}-{os.getpid()}@acme.test>"
        raw = (f"From: Acme <notifications@acme.test>\r\nTo: probe@recipient.test\r\nSubject: {tag}\r\n"
               f"Message-Id: {message_id}\r\nDate: Wed, 02 Dec 2026 06:00:00 +0000\r\n\r\nHello.\r\n").encode()
        reply = smtp_tools.send(GATEWAY, 587, "notifications@acme.test", ["probe@recipient.test"], raw, netns=NAMESPACE, source=ODOO)
        assert reply.get("data", [0])[0] == 250, reply
        return message_id

    def verdict(self, message_id: str) -> tuple[str, str | None, str | None, str | None]:
        """The receiver's (dkim, s=, d=, dmarc) for a delivered message."""
        delivery = MaildirIndex(self.root / "receiver" / "mail").wait(message_id, time.time() + 60)
        assert delivery is not None, f"{message_id} not delivered"
        found = receiver_verdict(delivery.raw, AUTHSERV_ID)
        assert len(found.dkim) == 1, found
        return found.dkim[0].result, found.dkim[0].selector, found.dkim[0].domain, found.dmarc

    def pids(self) -> dict[str, int]:
        return {p.role: p.pid for p in LabState.load(STATE_DIR).processes}


def gateway_probe(found: dict[str, list[dict[str, str]]]) -> str:
    [probe] = found["e2e.outbound.gateway"]
    assert probe["status"] == "pass", probe
    return probe["summary"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    require_root()
    for binary in ("named", "postfix", "opendkim", "opendmarc", "policyd-spf", "dig"):
        require_binary(binary)
    STATE_DIR.parent.mkdir(mode=0o755, exist_ok=True)
    stack_file = tmp_path_factory.mktemp("rotation") / "Pulumi.rotation.yaml"
    declared = yaml.safe_load(project.stack_path("lab").read_text())
    running = Rehearsal(stack_file, declared)
    try:
        yield running
    finally:
        mailstack("lab", "down", "--purge", *running.opts())
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        assert not netns.exists(NAMESPACE)


def test_lab_up_walks_a_dkim_rotation_through_every_phase(rehearsal: Rehearsal) -> None:
    lab = rehearsal
    # publish: before this first apply BIND served neither key; both are published now,
    # and the old key signs.
    lab.declare("lab")
    first = lab.up("--dnssec")  # signed zones, as tests/test_lab.py proves every stack (later ups keep them)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "DKIM rotation lab -> lab2: phase publish, signing with lab" in first.stdout, first.stdout
    assert dig(OLD) and dig(NEW)
    recorded = lab.rotation()
    assert recorded == {"selector": "lab2", "previous": "lab", "switchedAt": None, "retireAt": None}, recorded
    assert stat.S_IMODE(lab.rotation_file.stat().st_mode) == 0o600
    code, found = lab.check("e2e", "dkim")
    assert "dkim=pass (d=acme.test s=lab)" in gateway_probe(found), found["e2e.outbound.gateway"]
    assert [f["status"] for f in found["dkim.rotation"]] == ["pass"], found["dkim.rotation"]
    # Served everywhere now, but the gateway still signs with lab: the check says what comes next.
    assert "phase publish: every authoritative server serves lab2's record; the next apply" in found["dkim.rotation"][0]["summary"]
    # A message signed now waits in the gateway's queue across the switch.
    lab.hold(True)
    queued = lab.submit("queued")
    wait_for(lambda: "notifications@acme.test" in lab.postfix("postqueue", "-p"), 30, what="the message queued at the gateway")

    # switch: the new key was served when this apply began: recorded, OpenDKIM re-rendered.
    before = lab.pids()
    started = time.time()
    second = lab.up()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "DKIM rotation lab -> lab2: phase switch, signing with lab2" in second.stdout, second.stdout
    assert "gateway-mx1.acme.test-opendkim (signing with lab2)" in second.stdout, second.stdout
    recorded = lab.rotation()
    assert started <= recorded["switchedAt"] <= time.time(), recorded
    assert recorded["retireAt"] == pytest.approx(recorded["switchedAt"] + TTL + MARGIN), recorded
    after = lab.pids()
    assert after["gateway-mx1.acme.test-postfix"] == before["gateway-mx1.acme.test-postfix"]  # Postfix and its queue kept
    assert after["gateway-mx1.acme.test-opendkim"] != before["gateway-mx1.acme.test-opendkim"]
    assert "notifications@acme.test" in lab.postfix("postqueue", "-p")

    # early: dkim.previous dropped before the retire time is refused; nothing changes.
    lab.declare(None, allow_delete=True)
    early = lab.up()
    assert early.returncode == 2, early.stdout + early.stderr
    assert "dkim.previous: lab's record may be deleted only after " + when(recorded["retireAt"]) in early.stderr, early.stderr
    assert "Traceback" not in early.stderr
    assert dig(OLD), "the old record is still served"
    assert lab.rotation() == recorded and lab.pids() == after
    lab.declare("lab")

    # The queued message (signed with lab before the switch) still verifies after it.
    lab.hold(False)
    assert lab.verdict(queued) == ("pass", "lab", "acme.test", "pass")
    assert lab.verdict(lab.submit("switched")) == ("pass", "lab2", "acme.test", "pass")
    code, found = lab.check("e2e", "dkim")
    assert "dkim=pass (d=acme.test s=lab2)" in gateway_probe(found), found["e2e.outbound.gateway"]
    assert [f["status"] for f in found["dkim.rotation"]] == ["pass"], found["dkim.rotation"]
    again = lab.up()  # a later apply keeps the recorded switch time
    assert again.returncode == 0 and lab.rotation() == recorded, again.stdout + again.stderr

    # retire: the old record still published after switch + TTL + margin is a warning.
    wait_for(lambda: time.time() > recorded["retireAt"], TTL + MARGIN + 10, interval=1, what="the retire time")
    code, found = lab.check("dkim")
    [rotation] = found["dkim.rotation"]
    assert rotation["status"] == "warn" and "still published after its retire time" in rotation["summary"], rotation

    # steady: without dns.allowDelete the old key record (mail-critical) is not deleted.
    lab.declare(None)
    kept = lab.up()
    assert kept.returncode == 2 and "allowDelete" in kept.stderr, kept.stdout + kept.stderr
    assert dig(OLD) and lab.rotation() == recorded
    # With it, the old record goes; signing stays on the new key; everything is green.
    lab.declare(None, allow_delete=True)
    last = lab.up()
    assert last.returncode == 0, last.stdout + last.stderr
    assert "1 delete" in last.stdout and "DKIM rotation" not in last.stdout, last.stdout
    assert dig(OLD) == "" and dig(NEW)
    assert not lab.rotation_file.exists()
    assert lab.verdict(lab.submit("steady")) == ("pass", "lab2", "acme.test", "pass")
    code, found = lab.check()
    bad = [(i, f["status"], f["summary"]) for i, fs in found.items() for f in fs if f["status"] in ("fail", "error", "warn")]
    assert code == 0 and not bad, bad
    assert "dkim=pass (d=acme.test s=lab2)" in gateway_probe(found)
    assert [f["status"] for f in found["dkim.rotation"]] == ["skip"]
