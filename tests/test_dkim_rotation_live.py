"""A DKIM rotation walked through live: every phase signs a message that an independent
receiver verifies.

Two authoritative BIND servers for ``acme.test`` (``ns1``/``ns2``, the zone's NS set),
the gateway's Postfix and OpenDKIM rendered from the plan, and the lab's receiver
(Postfix + policyd-spf + OpenDKIM verify + OpenDMARC, nobody here wrote them) in one
network namespace. The phase comes from the one rule with what each server answers
(asked from inside the namespace by ``mailstack plan``, the CLI a user runs) and the
recorded state (a file, as the lab keeps it); the verdicts are the receiver's own
Authentication-Results, read with ``authres``.

publish  ns2 lacks the new key -> OpenDKIM signs with the old selector -> dkim=pass s=old
switch   ns2 serves it          -> the tables switch to the new one     -> dkim=pass s=new
         a message signed in publish, queued until now               -> dkim=pass s=old
         dropping dkim.previous now is refused (exit 2, the retire time named)
retire   TTL (1 s) + margin (15 s) later: the check warns the old key is still published
         -> dkim.previous removed, the old record deleted -> dkim=pass s=new, check skipped
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan as planning
from mailstack.config.stack import from_config
from mailstack.core.record import Record
from mailstack.gateway import render
from mailstack.lab import netns, smtp_tools
from mailstack.lab.binaries import binary
from mailstack.lab.bind import BindServer
from mailstack.lab.postfix import OpenDkim, PostfixInstance, lab_layout, make_workdir, wait_for
from mailstack.lab.tls import self_signed
from mailstack.rules import dkim_rotation
from mailstack.rules.dkim_rotation import Phase, RotationState
from tests.receiver import Receiver, verdict
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

NS1, NS2, GATEWAY, ODOO, RECEIVER = "127.0.154.2", "127.0.154.3", "127.0.154.10", "127.0.154.20", "127.0.154.30"
RECEIVER_HOST = "mx.recipient.test"
#: Seconds after the old record's TTL (1 s): long enough for the switch-phase steps below.
MARGIN = 15
PROJECT = Path(__file__).resolve().parent.parent


def stack_values(workdir: Path, previous: str | None, allow_delete: bool = False) -> dict[str, Any]:
    return {
        "domain": "acme.test",
        "odoo": {"hosting": "onpremise", "url": "http://127.0.154.40:8069", "database": "odoo"},
        "outbound": ["gateway"],
        "inbound": {"mode": "none"},
        "gateways": [{"hostname": "mx1.acme.test", "ipv4": GATEWAY}],
        # TTL 1 s (Cloudflare's "automatic") and a short margin: the retire time comes
        # within the test, by the real clock.
        "dkim": {"selector": "new", **({"previous": previous, "retireMargin": MARGIN} if previous else {})},
        "dmarc": {"policy": "reject"},
        "dns": {"zone": "acme.test", "ttl": 1, "allowDelete": allow_delete},
        "gateway": {"odooAddresses": [ODOO], "relayHost": f"[{RECEIVER}]:25",
                    "tls": {"cert": str(workdir / "tls" / "gw.pem"), "key": str(workdir / "tls" / "gw.key")}},
    }


def keypair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class Site:
    netns: str
    workdir: Path
    keys: dict[str, tuple[str, str]]
    ns1: BindServer
    ns2: BindServer
    receiver: Receiver
    opendkim: OpenDkim | None = None
    postfix: PostfixInstance | None = None
    sent: int = field(default=0)

    @property
    def stack_file(self) -> Path:
        return self.workdir / "Pulumi.rotation.yaml"

    @property
    def state_file(self) -> Path:
        """Where the lab keeps the recorded rotation (``<state>/dkim-rotation.json``)."""
        return self.workdir / "dkim-rotation.json"

    @property
    def owned_file(self) -> Path:
        """The records mailstack wrote (``pulumi stack output records --json``)."""
        return self.workdir / "owned.json"

    def declare(self, previous: str | None, allow_delete: bool = False) -> planning.Plan:
        values = stack_values(self.workdir, previous, allow_delete)
        self.stack_file.write_text(yaml.safe_dump({"config": {f"mailstack:{k}": v for k, v in values.items()}}))
        planned = planning.build(from_config(values), self.keys["new"][1], self.keys["old"][1] if previous else None)
        if previous:
            self.owned_file.write_text(json.dumps([r.as_json() for r in planned.records]))
        return planned

    def zone(self, server: BindServer, planned: planning.Plan, *, without: tuple[str, ...] = ()) -> None:
        records = [r for r in planned.records if r.name not in without]
        records += [Record("ns1.acme.test", "A", NS1, 300), Record("ns2.acme.test", "A", NS2, 300)]
        server.replace_zone("acme.test", records, ["@ 300 IN NS ns2.acme.test."])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``mailstack`` inside the namespace (where the authoritative servers are)."""
        return subprocess.run([binary("ip"), "netns", "exec", self.netns, sys.executable, "-m", "mailstack.cli", *args],
                              cwd=PROJECT, capture_output=True, text=True, timeout=120, check=False)

    def key_files(self) -> list[str]:
        names = []
        for selector, (_, public) in self.keys.items():
            path = self.workdir / f"{selector}.pub.pem"
            path.write_text(public)
            names.append(str(path))
        return names

    def plan_rotation(self) -> dict[str, Any] | None:
        new_pem, old_pem = self.key_files()
        args = ["plan", "--stack-file", str(self.stack_file), "--nameserver", NS1, "--format", "json", "--owned", str(self.owned_file),
                "--dkim-public-key", new_pem, "--dkim-previous-public-key", old_pem]
        if self.state_file.exists():
            args += ["--dkim-rotation", str(self.state_file)]
        result = self.cli(*args)
        assert result.returncode in (0, 1) and result.stdout, result.stdout + result.stderr
        rotation: dict[str, Any] | None = json.loads(result.stdout).get("dkimRotation")
        return rotation

    def check(self) -> dict[str, Any]:
        args = ["check", "--stack-file", str(self.stack_file), "--nameserver", NS1, "--only", "dkim", "--format", "json"]
        if self.state_file.exists():
            args += ["--dkim-rotation", str(self.state_file)]
        result = self.cli(*args)
        findings = [f for f in json.loads(result.stdout)["checks"] if f["id"] == "dkim.rotation"]
        assert len(findings) == 1, result.stdout + result.stderr
        return findings[0]

    def apply(self, planned: planning.Plan) -> str:
        """What an apply does: ``mailstack render --dkim-rotation FILE`` asks the servers
        and records the switch (the CLI's state file), then OpenDKIM restarts on the
        tables of that phase; returns the signing selector."""
        cli_table = None
        if planned.stack.dkim.previous:
            self.sent += 1
            out = self.workdir / f"rendered-{self.sent}"
            result = self.cli("render", "--stack-file", str(self.stack_file), "--out", str(out), "--nameserver", NS1,
                              "--dkim-rotation", str(self.state_file))
            assert result.returncode == 0, result.stdout + result.stderr
            state = RotationState.loads(self.state_file.read_text())
            planned = planned.with_rotation(dkim_rotation.decide(planned.stack.dkim, planned.stack.dns.ttl, None, state, time.time()))
            cli_table = (out / "mx1.acme.test" / "opendkim" / "SigningTable").read_text()
        elif self.state_file.exists():
            self.state_file.unlink()
        signing = planned.signing_selector
        files = render.render(planned, dkim_private_key_pem=self.keys[signing][0], layout=lab_layout(self.workdir, GATEWAY))
        assert cli_table is None or files["opendkim/SigningTable"].text == cli_table
        tables = {k: v.text for k, v in files.items() if k.startswith("opendkim/")}
        if self.opendkim is None or tables != {k: v.text for k, v in self.opendkim.files.items() if k.startswith("opendkim/")}:
            # As the deploy's activate step: OpenDKIM restarted on the new tables (only
            # when they changed: it takes seconds to exit).
            if self.opendkim is not None:
                self.opendkim.stop()
            self.opendkim = OpenDkim(self.workdir, files, netns=self.netns)
            self.opendkim.start()
        if self.postfix is None:
            self.postfix = PostfixInstance(self.workdir, files, netns=self.netns, overrides={"inet_interfaces": GATEWAY, "smtp_bind_address": GATEWAY})
            self.postfix.start()
        return signing

    def postfix_command(self, *argv: str) -> str:
        assert self.postfix is not None
        result = subprocess.run([binary("ip"), "netns", "exec", self.netns, binary(argv[0]), "-c", str(self.postfix.config_dir), *argv[1:]],
                                capture_output=True, text=True, timeout=60, check=True)
        return result.stdout

    def hold(self, held: bool) -> None:
        """Keep outbound mail queued at the gateway (``defer_transports``), or let it go."""
        self.postfix_command("postconf", "-e", f"defer_transports={'smtp' if held else ''}")
        self.postfix_command("postfix", "reload")
        if not held:
            self.postfix_command("postqueue", "-f")

    def submit(self) -> str:
        """One message from Odoo to the gateway's submission port; its Message-Id."""
        self.sent += 1
        message_id = f"<rotation-{self.sent}-{os.getpid()}@acme.test>"
        raw = (f"From: Acme <notifications@acme.test>\r\nTo: ann@recipient.test\r\nSubject: phase {self.sent}\r\n"
               f"Message-Id: {message_id}\r\nDate: Wed, 02 Dec 2026 06:00:00 +0000\r\n\r\nHello.\r\n").encode()
        reply = smtp_tools.send(GATEWAY, 587, "notifications@acme.test", ["ann@recipient.test"], raw, netns=self.netns, source=ODOO)
        assert reply.get("data", [0])[0] == 250, reply
        return message_id

    def send(self, message_id: str | None = None) -> tuple[str, str, str, str]:
        """One message from Odoo through the gateway (or one submitted before); the
        receiver's (dkim, s=, dmarc, spf)."""
        message_id = message_id or self.submit()
        delivered = wait_for(lambda: next((m for m in self.receiver.messages() if message_id.encode() in m), None), 60,
                             what=f"{message_id} at the receiver")
        found = verdict(delivered, RECEIVER_HOST)
        assert len(found.dkim) == 1, found
        result, domain, selector = found.dkim[0]
        assert domain == "acme.test"
        return result, selector, found.dmarc, found.spf


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    require_root()
    for name in ("postfix", "named", "opendkim", "opendmarc", "policyd-spf", "ip"):
        require_binary(name)
    name = f"i15d-rot-{os.getpid()}"
    workdir = make_workdir("i15d-rot-")
    started: list[Any] = []
    created = False
    site_: Site | None = None
    try:
        (workdir / "tls").mkdir()
        cert, key = self_signed(["mx1.acme.test"])
        (workdir / "tls" / "gw.pem").write_bytes(cert)
        (workdir / "tls" / "gw.key").touch(mode=0o600)
        (workdir / "tls" / "gw.key").write_bytes(key)
        netns.create(name, nameserver=NS1)
        created = True
        for address in (NS1, NS2, GATEWAY, ODOO, RECEIVER):
            netns.add_address(address, name)
        ns1 = BindServer(workdir / "ns1", NS1, 53, netns=name, nameserver="ns1.acme.test")
        ns2 = BindServer(workdir / "ns2", NS2, 53, netns=name, nameserver="ns1.acme.test")
        receiver = Receiver(workdir / "receiver", name, RECEIVER, RECEIVER_HOST, "recipient.test", NS1)
        site_ = Site(name, workdir, {"new": keypair(), "old": keypair()}, ns1, ns2, receiver)
        planned = site_.declare("old")
        for server in (ns1, ns2):
            server.add_zone("acme.test", [])
        ns1.add_zone("recipient.test", [Record("recipient.test", "MX", RECEIVER_HOST, 300, 10), Record(RECEIVER_HOST, "A", RECEIVER, 300)])
        # The new key is on ns1 already; ns2 (a secondary that has not transferred yet) lacks it.
        site_.zone(ns1, planned)
        site_.zone(ns2, planned, without=("new._domainkey.acme.test",))
        for server in (ns1, ns2, receiver):
            server.start()
            started.append(server)
        yield site_
    finally:
        if site_ is not None:
            for server in (site_.postfix, site_.opendkim):
                if server is not None:
                    server.stop()
        for server in reversed(started):
            if isinstance(server, Receiver):
                server.terminate()
                server.wait()
            else:
                server.stop()
        if created:
            netns.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)


def test_every_phase_signs_mail_the_independent_receiver_verifies(site: Site) -> None:
    # publish: ns2 lacks the new key, so the old one signs; the check says which server.
    planned = site.declare("old")
    assert site.apply(planned) == "old"
    rotation = site.plan_rotation()
    assert rotation is not None and rotation["phase"] == Phase.PUBLISH.value and rotation["signing"] == "old", rotation
    assert rotation["switchedAt"] is None and "not yet: ns2.acme.test" in rotation["next"]
    new_pem, old_pem = site.key_files()
    shown = site.cli("diff", "--stack-file", str(site.stack_file), "--nameserver", NS1, "--dkim-public-key", new_pem,
                     "--dkim-previous-public-key", old_pem, "--dkim-rotation", str(site.state_file))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "DKIM rotation old -> new: phase publish, signing with old\n  next: publishing new;" in shown.stdout, shown.stdout
    assert site.send() == ("pass", "old", "pass", "pass")
    # A message signed now waits in the gateway's queue (a receiver deferring it) until
    # after the switch: the old key must still be published when it arrives.
    site.hold(True)
    queued = site.submit()
    wait_for(lambda: "notifications@acme.test" in site.postfix_command("postqueue", "-p"), 30, what="the message queued")
    finding = site.check()
    assert finding["status"] == "warn" and "ns2.acme.test" in finding["summary"] and "new._domainkey.acme.test" in finding["summary"], finding

    # switch: ns2 has transferred; the apply records the switch time, the new key signs.
    site.zone(site.ns2, planned)
    before = time.time()
    assert site.apply(planned) == "new"
    rotation = site.plan_rotation()
    assert rotation is not None and rotation["phase"] == Phase.SWITCH.value and rotation["signing"] == "new", rotation
    assert before <= rotation["switchedAt"] <= time.time() and rotation["retireAt"] == pytest.approx(rotation["switchedAt"] + 1 + MARGIN)
    finding = site.check()
    assert finding["status"] == "pass", finding
    # Dropping dkim.previous before the retire time is refused, the time named.
    site.declare(None)
    early = site.cli("plan", "--stack-file", str(site.stack_file), "--nameserver", NS1, "--owned", str(site.owned_file),
                     "--dkim-rotation", str(site.state_file))
    assert early.returncode == 2 and not early.stdout
    assert "dkim.previous: old's record may be deleted only after" in early.stderr, early.stderr
    planned = site.declare("old")
    assert not any(queued.encode() in m for m in site.receiver.messages()), "held at the gateway until now"
    site.hold(False)
    assert site.send() == ("pass", "new", "pass", "pass")
    assert site.send(queued) == ("pass", "old", "pass", "pass")  # signed before the switch, verified after it
    site.apply(planned)
    again = site.plan_rotation()  # recorded once: a later apply keeps the switch time
    assert again is not None and (again["switchedAt"], again["retireAt"]) == (rotation["switchedAt"], rotation["retireAt"])

    # retire: TTL + margin have passed; the old key still published is a warning.
    wait_for(lambda: time.time() > rotation["retireAt"], MARGIN + 5, what="the retire time")
    rotation = site.plan_rotation()
    assert rotation is not None and rotation["phase"] == Phase.RETIRE.value and rotation["signing"] == "new", rotation
    assert site.send() == ("pass", "new", "pass", "pass")
    finding = site.check()
    assert finding["status"] == "warn" and "still published after its retire time" in finding["summary"], finding
    # dkim.previous removed: now allowed, the old record deleted on both servers (a
    # mail-critical record: its deletion needs dns.allowDelete for this apply).
    planned = site.declare(None, allow_delete=True)
    allowed = site.cli("plan", "--stack-file", str(site.stack_file), "--nameserver", NS1, "--owned", str(site.owned_file),
                       "--dkim-rotation", str(site.state_file), "--dkim-public-key", site.key_files()[0])
    assert allowed.returncode == 1, allowed.stdout + allowed.stderr
    assert "delete    old._domainkey.acme.test TXT" in allowed.stdout, allowed.stdout
    for server in (site.ns1, site.ns2):
        site.zone(server, planned)
    assert site.apply(planned) == "new"
    assert site.send() == ("pass", "new", "pass", "pass")
    assert site.check()["status"] == "skip"
