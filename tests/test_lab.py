"""``mailstack lab`` end to end, as root, through the real CLI, for every stack of the
project (``stacks/Pulumi.*.yaml``, so a stack added later is proven too): ``lab up`` →
``lab check`` (all green, every e2e probe judged by the independent receiver) → ``lab
down``, one stack after the other in one state directory and namespace (each ``up``
of another stack starts from that stack's own state), plus the defects issue 11 fixed
and the faults the lab must survive, on the stacks they concern.

The lab runs in its own namespace (``mslabt<random>``) with a state directory under
/var/lib (OpenDKIM refuses keys below world-writable /tmp), so it never meets the
developer's own ``mailstack lab`` in ``mslab``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstack.checks.probes.e2e import MaildirIndex
from mailstack.checks.probes.verdicts import Verdict, receiver_verdict
from mailstack.config import stackfile
from mailstack.core.model import MailDomain, SenderKind
from mailstack.lab import binaries, control, netns, roles, users
from mailstack.lab.postfix import wait_for
from mailstack.lab.receiver import AUTHSERV_ID
from mailstack.lab.state import LabState
from mailstack.lab.topology import Topology
from mailstack.lab.topology import build as build_topology
from tests import project
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Unique per run: the whole suite may run in several sessions at once on one machine,
#: and a second run's `lab down` must never reach this run's processes.
NAMESPACE = f"mslabt{uuid.uuid4().hex[:6]}"
STATE_DIR = Path("/var/lib/mailstack-lab-tests") / uuid.uuid4().hex[:8]
STACKS = [path.name[len("Pulumi."):-len(".yaml")] for path in project.all_stacks()]
#: The lab stack runs on a copy of a real zone (``--seed-zone``): every check must pass
#: on top of what is there.
SEEDS = {"lab": Path(__file__).parent / "zones" / "acme.test.zone"}
SENDER_IDS = {SenderKind.ODOO: "odoo", SenderKind.GATEWAY: "gateway", SenderKind.MICROSOFT: "microsoft",
              SenderKind.GOOGLE: "google", SenderKind.MAILJET: "mailjet"}
PATHS = {"gateway": "gateway", "odoo-mx": "odoo", "imap": "imap", "forward": "forward"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``lab`` is parametrized over the project's stacks (``@pytest.mark.stacks(...)``
    narrows a test to some); module scope, so each stack comes up once."""
    if "lab" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("stacks")
        names = [n for n in STACKS if marker is None or n in marker.args]
        metafunc.parametrize("lab", names, indirect=True, scope="module", ids=names)


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


@dataclass
class Lab:
    name: str
    stack_file: Path
    stack: MailDomain
    topology: Topology

    @property
    def state(self) -> LabState:
        return LabState.load(STATE_DIR)

    @property
    def root(self) -> Path:
        return self.state.stack_root

    @property
    def maildir(self) -> MaildirIndex:
        return MaildirIndex(self.root / "receiver" / "mail")

    def opts(self) -> tuple[str, ...]:
        return ("--state-dir", str(STATE_DIR), "--namespace", NAMESPACE)


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    require_root()
    for binary in ("named", "postfix", "opendkim", "opendmarc", "policyd-spf"):
        require_binary(binary)
    STATE_DIR.parent.mkdir(mode=0o755, exist_ok=True)
    stack_file = project.stack_path(request.param)
    stack = stackfile.load(stack_file)
    running = Lab(request.param, stack_file, stack, build_topology(stack, NAMESPACE))
    seed = ("--seed-zone", str(SEEDS[request.param])) if request.param in SEEDS else ()
    try:
        # --dnssec: every stack is proven on signed zones, DANE and TLS checks included
        mailstack("lab", "up", "--stack-file", str(stack_file), *seed, "--dnssec", *running.opts(), check=True)
        yield running
    finally:
        mailstack("lab", "down", *running.opts())
        assert not netns.exists(NAMESPACE)


@pytest.fixture(scope="module", autouse=True)
def purge_at_the_end() -> Iterator[None]:
    yield
    if STATE_DIR.exists():
        mailstack("lab", "down", "--purge", "--state-dir", str(STATE_DIR), "--namespace", NAMESPACE)
        shutil.rmtree(STATE_DIR, ignore_errors=True)


def check_json(lab: Lab, *extra: str) -> tuple[int, list[dict[str, str]]]:
    result = mailstack("lab", "check", "--format", "json", *lab.opts(), *extra)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)["checks"]


# -- every stack -------------------------------------------------------------------------


def test_check_is_all_green_with_every_sender_and_path_proven(lab: Lab) -> None:
    code, findings = check_json(lab)
    bad = [(f["id"], f["summary"]) for f in findings if f["status"] in ("fail", "error", "warn")]
    assert bad == [] and code == 0
    passed = {f["id"] for f in findings if f["status"] == "pass"}
    raw = 0
    for sender in lab.stack.outbound:
        if sender.kind is SenderKind.SPF:
            raw += 1
            assert f"e2e.outbound.spf-{raw}" in passed
        else:
            assert f"e2e.outbound.{SENDER_IDS[sender.kind]}" in passed
    path = PATHS.get(lab.stack.inbound.mode.value)
    if path:
        assert {f"e2e.inbound.{path}.{mode}" for mode in ("to", "cc", "bcc")} <= passed
    if lab.stack.forwards_through_gateways:  # redirected with SRS to <db>.odoo.com, judged in Odoo, through every MX
        forward = [f for f in findings if f["id"].startswith("e2e.inbound.forward.") and f["status"] == "pass"]
        assert all("in Odoo after" in f["summary"] for f in forward)
        assert {g.hostname for g in lab.stack.gateways} <= {f["summary"].split(" via ")[1].split()[0] for f in forward}
    if lab.stack.inbound.mode.value == "imap":  # Dovecot on the shared mailbox, fetched by Odoo's incoming server
        assert {"imap.tls", "imap.login", "imap.mailbox", "e2e.inbound.imap", "odoo.incoming-server"} <= passed
    managed = {"aliasDomains": "odoo.alias-domains", "outgoingServer": "odoo.outgoing-server", "incomingServer": "odoo.incoming-server"}
    applied = {managed[m.value] for m in lab.stack.odoo.manage}  # as `pulumi up` applies them (mailstack.odoo.apply)
    assert applied <= passed and all("missing" not in f["summary"] for f in findings if f["id"] in applied)
    e2e = [f for f in findings if f["id"].startswith("e2e.outbound.") and f["status"] == "pass"]
    # the verdicts come from the independent receiver, with the second opinion agreeing
    assert e2e and all(f"receiver {AUTHSERV_ID}: spf=pass" in f["detail"] and "second opinion" in f["detail"] for f in e2e)
    sending = [g for g in lab.stack.gateways if any(s.kind is SenderKind.GATEWAY for s in lab.stack.outbound)]
    for gateway in sending:
        assert any(gateway.hostname in f["summary"] and "over IPv4" in f["summary"] for f in e2e)
        if gateway.ipv6:  # SPF ip6: proven by mail sent over IPv6, the AAAA by mail received over it
            assert any(gateway.hostname in f["summary"] and "over IPv6" in f["summary"] for f in e2e)
            lab_v6 = lab.topology.host(gateway.hostname).ipv6
            assert any(f"[{lab_v6}]" in f["summary"] for f in findings if f["id"].startswith("e2e.inbound.") and f["status"] == "pass")
    assert {"dnssec.signed", "dnssec.valid"} <= passed  # on the signed lab zones
    if "smtp.starttls" in passed:  # every MX the smtp group talks to: chain, versions, expiry too
        assert {"tls.chain", "tls.versions", "tls.expiry"} <= passed
    if lab.stack.gateways:  # the lab's gateway key, its TLSA in the signed zone
        assert {"dane.tlsa", "dane.signed"} <= passed
    declared_keys = [s for s in lab.stack.outbound if s.kind in (SenderKind.GOOGLE, SenderKind.MAILJET) and s.dkim_key]
    for sender in declared_keys:  # the report says the lab published its own key
        assert any("in place of the declared one" in f["detail"] for f in e2e if f["id"] == f"e2e.outbound.{SENDER_IDS[sender.kind]}")


def test_status_shows_every_host_and_the_address_mapping(lab: Lab) -> None:
    status = mailstack("lab", "status", *lab.opts(), check=True)
    assert "NOT RUNNING" not in status.stdout and "ABSENT" not in status.stdout
    for host in lab.topology.hosts:
        assert host.name in status.stdout
    for mapped in lab.topology.mapped:
        assert mapped.declared in status.stdout and mapped.lab in status.stdout
    declared = [a for g in lab.stack.gateways for a in (g.ipv4, g.ipv6) if a and not a.startswith("127.")]
    assert all(any(m.declared == a for m in lab.topology.mapped) for a in declared), "every declared gateway address is mapped"


RESOLVE = """
import json, sys, dns.resolver, dns.reversename
out = {}
for name, addresses in json.loads(sys.argv[1]).items():
    found = []
    for rdtype in ("A", "AAAA"):
        try:
            found += [r.address for r in dns.resolver.resolve(name, rdtype)]
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            pass
    ptr = {}
    for address in addresses:
        try:
            ptr[address] = [str(r.target).rstrip(".") for r in dns.resolver.resolve(dns.reversename.from_address(address), "PTR")]
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            ptr[address] = []
    out[name] = {"addresses": found, "ptr": ptr}
print(json.dumps(out))
"""


def test_every_lab_host_name_has_a_and_ptr(lab: Lab) -> None:
    wanted = {h.name: list(h.addresses) for h in lab.topology.hosts}
    result = in_lab(sys.executable, "-c", RESOLVE, json.dumps(wanted))
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    for name, addresses in wanted.items():
        assert sorted(answers[name]["addresses"]) == sorted(addresses), name
        for address in addresses:
            assert answers[name]["ptr"][address] == [name], (name, address)


def test_each_gateway_host_and_policy_host_is_a_role(lab: Lab) -> None:
    planned = control.lab_plan(lab.state, lab.stack, lab.topology)
    names = {r.name for r in roles.for_lab(roles.Lab(lab.state, lab.stack, planned, lab.topology))}
    assert {f"gateway-{g.hostname}" for g in lab.stack.gateways} <= names
    assert ("mta-sts" in names) == bool(lab.stack.mta_sts)
    running = {p.role for p in lab.state.processes}
    assert {f"gateway-{g.hostname}-postfix" for g in lab.stack.gateways} <= running  # primary and backup MX both run
    if lab.stack.gateway is not None and lab.stack.gateway.mailgate.delivery == "lmtp" and planned.relay_domains \
            and not lab.stack.forwards_through_gateways:
        # Postfix delivers to Odoo over LMTP: each gateway runs its resident mailgate.
        assert {f"gateway-{g.hostname}-mailgated" for g in lab.stack.gateways} <= running


def dig(lab: Lab, name: str, rdtype: str) -> list[str]:
    """What the lab's BIND answers, asked with dig inside the namespace (not our code)."""
    result = in_lab("dig", "+short", "+norecurse", f"@{lab.topology.bind_address}", name, rdtype)
    assert result.returncode == 0, result.stderr
    return sorted(line for line in result.stdout.splitlines() if line)


@pytest.mark.stacks("lab")
def test_the_seeded_zones_records_are_served_beside_the_plan(lab: Lab) -> None:
    assert dig(lab, "acme.test", "TXT") == sorted([
        '"MS=ms48213579"', '"facebook-domain-verification=w1x2y3z4a5b6c7d8e9f0g1h2i3j4k5"',
        '"google-site-verification=3Kq1xR0yHc9Jd2m6wQp0Zs8aVbNtLfU4eGiO7kYhXcM"', '"v=spf1 ip4:127.0.40.10 -all"',
    ])
    assert dig(lab, "acme.test", "MX") == ["10 mx1.acme.test."]
    assert dig(lab, "www.acme.test", "CNAME") == ["acme-web.pages.example."]
    assert dig(lab, "anything.acme.test", "A") == ["192.0.2.80"], "the wildcard"
    assert dig(lab, "odoo.acme.test", "A") == ["127.0.40.20"], "the lab's host beside the wildcard"
    assert dig(lab, "support.acme.test", "MX") == ["10 mx.helpdesk.example."]
    assert dig(lab, "support.acme.test", "TXT") == ['"v=spf1 include:mail.helpdesk.example ~all"']
    assert dig(lab, "acme.test", "CAA") == ['0 iodef "mailto:security@acme.test"', '0 issue "letsencrypt.org"']
    status = mailstack("lab", "status", *lab.opts(), check=True)
    for line in ("served  acme.test MX 10 mx1.acme.test", "served  lab._domainkey.acme.test TXT v=DKIM1", "served  mx1.acme.test A 127.0.40.10"):
        assert line in status.stdout


# -- the independent receiver is not lenient (lab stack) -----------------------------------

SEND = """
import json, smtplib, sys
request = json.loads(sys.stdin.read())
raw = request["raw"].encode()
if request.get("key"):
    import dkim
    raw = dkim.sign(raw, request["selector"].encode(), request["domain"].encode(), request["key"].encode(),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + raw
try:
    with smtplib.SMTP(request["host"], request["port"], source_address=(request["source"], 0), local_hostname=request["helo"], timeout=60) as client:
        client.sendmail(request["mail_from"], [request["to"]], raw)
    print(json.dumps({"ok": True}))
except smtplib.SMTPException as err:
    print(json.dumps({"ok": False, "error": repr(err)}))
"""


def send(lab: Lab, *, host: str, source: str, mail_from: str, to: str, raw: str, port: int = 25, helo: str = "client.lab.test",
         key: str | None = None, selector: str = "", domain: str = "") -> dict[str, object]:
    request = {"host": host, "port": port, "source": source, "mail_from": mail_from, "to": to, "raw": raw, "helo": helo,
               "key": key, "selector": selector, "domain": domain}
    result = in_lab(sys.executable, "-c", SEND, input=json.dumps(request))
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def message(message_id: str, sender: str, to: str = "probe@recipient.test", subject: str = "lab test", body: str = "hello") -> str:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
            f"Message-ID: {message_id}\r\n\r\n{body}\r\n")


def delivered(lab: Lab, message_id: str) -> tuple[bytes, Verdict]:
    found = lab.maildir.wait(message_id, time.time() + 30)
    assert found is not None, f"{message_id} not delivered to the receiver"
    return found.raw, receiver_verdict(found.raw, AUTHSERV_ID)


def fresh_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.mark.stacks("lab")
def test_the_receiver_fails_a_wrong_key_an_unlisted_address_and_a_foreign_from(lab: Lab) -> None:
    """Each verdict fails when it should: a signature by another key (dkim=fail), an
    address SPF does not list (spf=fail, and DMARC with it), a From outside the signing
    domain (dkim and spf pass for acme.test, dmarc=fail for the From's domain), and a
    forged Authentication-Results claiming the receiver's id is removed, not trusted."""
    receiver = lab.topology.receiver.ipv4
    gateway = lab.topology.host("mx1.acme.test").ipv4
    odoo = lab.topology.odoo.ipv4
    assert receiver and gateway and odoo
    own_key = lab.state.dkim_private_key(lab.stack.dkim.selector, lab.stack.dkim.bits)
    cases = {
        "wrong-key": dict(source=gateway, key=fresh_key()),
        "unlisted": dict(source=odoo, key=None),
        "foreign-from": dict(source=gateway, key=own_key, sender="ceo@recipient.test"),
        "forged-ar": dict(source=odoo, key=None, extra="Authentication-Results: mx.recipient.test; spf=pass smtp.mailfrom=acme.test; dkim=pass header.d=acme.test; dmarc=pass header.from=acme.test\r\n"),
    }
    verdicts = {}
    for case, spec in cases.items():
        message_id = f"<negative-{case}-{uuid.uuid4().hex}@acme.test>"
        raw = str(spec.get("extra", "")) + message(message_id, str(spec.get("sender", "notifications@acme.test")))
        sent = send(lab, host=receiver, source=str(spec["source"]), mail_from="bounce@acme.test", to="probe@recipient.test", raw=raw,
                    key=spec["key"] and str(spec["key"]), selector=lab.stack.dkim.selector, domain="acme.test")
        assert sent["ok"], sent
        verdicts[case] = delivered(lab, message_id)[1]
    assert verdicts["wrong-key"].spf == "pass" and [d.result for d in verdicts["wrong-key"].dkim] == ["fail"]
    assert verdicts["unlisted"].spf == "fail" and verdicts["unlisted"].dmarc == "fail"
    foreign = verdicts["foreign-from"]
    assert foreign.spf == "pass" and foreign.dkim_passes("acme.test") and foreign.dmarc == "fail" and foreign.dmarc_from == "recipient.test"
    assert verdicts["forged-ar"].dmarc == "fail" and verdicts["forged-ar"].spf == "fail" and not verdicts["forged-ar"].dkim_passes("acme.test")


@pytest.mark.stacks("lab")
def test_long_lines_are_refused_at_submission_and_998_byte_lines_verify_at_the_receiver(lab: Lab) -> None:
    """Postfix's SMTP client breaks lines over 998 bytes after OpenDKIM signed them
    (dkim=fail at the receiver): the gateway refuses them from Odoo with the reason,
    and a message at the limit arrives unbroken with a signature that verifies."""
    gateway, odoo = lab.topology.host("mx1.acme.test").ipv4, lab.topology.odoo.ipv4
    assert gateway and odoo
    long_subject = message("<long-subject@acme.test>", "notifications@acme.test", subject="s" * 1216)
    refused = send(lab, host=gateway, port=587, source=odoo, mail_from="bounce@acme.test", to="probe@recipient.test", raw=long_subject)
    assert not refused["ok"] and "5.6.0 a header line is longer than 998 bytes" in str(refused["error"])
    long_body = message("<long-body@acme.test>", "notifications@acme.test", body="b" * 1500)
    refused = send(lab, host=gateway, port=587, source=odoo, mail_from="bounce@acme.test", to="probe@recipient.test", raw=long_body)
    assert not refused["ok"] and "5.6.0 a line is longer than 998 bytes" in str(refused["error"])
    message_id = f"<at-the-limit-{uuid.uuid4().hex}@acme.test>"
    limit = message(message_id, "notifications@acme.test", subject="s" * (998 - len("Subject: ")), body="b" * 998)
    sent = send(lab, host=gateway, port=587, source=odoo, mail_from="bounce@acme.test", to="probe@recipient.test", raw=limit)
    assert sent["ok"], sent
    raw, verdict = delivered(lab, message_id)
    assert max(len(line) for line in raw.split(b"\n")) == 998
    assert verdict.dkim_passes("acme.test") and verdict.dmarc == "pass", verdict.summary()


@pytest.mark.stacks("onpremise-subdomain")
def test_mail_from_odoos_alias_subdomain_is_signed_and_passes_dmarc(lab: Lab) -> None:
    """Odoo's alias domain is the inbound subdomain (it receives there), so Odoo 17
    sends notifications@/bounce@mail.<domain>: through each gateway that must be signed
    d=mail.<domain> with SPF passing — before the fix it left unsigned and failed DMARC."""
    odoo = lab.topology.odoo.ipv4
    assert odoo
    for gateway in lab.stack.gateways:
        address = lab.topology.host(gateway.hostname).ipv4
        assert address
        for domain in lab.stack.domains:
            alias_domain = f"mail.{domain}"
            message_id = f"<alias-domain-{uuid.uuid4().hex}@{alias_domain}>"
            sent = send(lab, host=address, port=587, source=odoo, mail_from=f"bounce@{alias_domain}", to="probe@recipient.test",
                        raw=message(message_id, f'"Odoo" <notifications@{alias_domain}>'))
            assert sent["ok"], sent
            verdict = delivered(lab, message_id)[1]
            assert verdict.spf == "pass" and verdict.dkim_passes(alias_domain) and verdict.dmarc == "pass", (gateway.hostname, verdict.summary())


@pytest.mark.stacks("online-forward")
def test_forwarding_gateways_redirect_with_srs_and_a_bcc_alias_routes_by_its_local_part(lab: Lab) -> None:
    """Mode forward: each gateway (primary and backup) redirects the alias to
    ``<local>@<db>.odoo.com`` with the envelope sender rewritten by postsrsd into the
    stack's domain; the message was addressed only in the envelope (Bcc), so Odoo routes
    it by Delivered-To's local part (``alias_incoming_local``)."""
    saas, domain = lab.stack.odoo.saas_host, lab.stack.domain
    sender = lab.topology.receiver.ipv4
    assert saas and sender
    db = lab.root / "odoo" / "odoo-standin.sqlite3"
    for gateway in lab.stack.gateways:
        message_id = f"<fwd-{uuid.uuid4().hex}@recipient.test>"
        address = lab.topology.host(gateway.hostname).ipv4
        assert address
        sent = send(lab, host=address, source=sender, mail_from="ann@recipient.test", to=f"sales@{domain}",
                    raw=message(message_id, "ann@recipient.test", to="undisclosed-recipients:;"), helo="mx.recipient.test")
        assert sent["ok"], sent

        def stored(message_id: str = message_id) -> list[tuple[bytes, str]]:
            with sqlite3.connect(db) as connection:
                return connection.execute("SELECT raw, model FROM messages WHERE message_id = ?", (message_id,)).fetchall()

        [(raw, model)] = wait_for(stored, 60, what=f"{message_id} in Odoo through {gateway.hostname}")
        headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode().lower()
        assert f"delivered-to: sales@{saas}" in headers and model == "crm.lead", headers
        return_path = headers.split("return-path: ", 1)[1].split("\n", 1)[0].strip()
        assert return_path.startswith("<srs0=") and return_path.endswith(f"=recipient.test=ann@{domain}>"), return_path


# -- state, files and switching stacks ------------------------------------------------------


PRIVATE_FILES = ("secrets/*", "*/log/*", "bind/*", "odoo/*", "receiver/mail/**/*", "gateway*/mailstack/*",
                 "gateway*/opendkim/keys/*", "*/tls/key.pem", "services/*", "mta-sts/*")


@pytest.mark.stacks("lab", "onpremise")
def test_lab_files_holding_mail_logs_databases_or_secrets_are_private(lab: Lab) -> None:
    root = lab.root
    owners = {"receiver/mail": users.MAILBOX_USER, "mailstack": users.MAILGATE_USER, "keys": "opendkim"}
    checked = 0
    for pattern in PRIVATE_FILES:
        for path in root.glob(pattern):
            info = path.lstat()
            if stat.S_ISSOCK(info.st_mode) or path.name == "chain.pem":  # certificates are public
                continue
            relative = str(path.relative_to(root))
            expected = next((user for part, user in owners.items() if f"{part}/" in relative), "root")
            assert pwd.getpwuid(info.st_uid).pw_name == expected, relative
            if stat.S_ISDIR(info.st_mode):
                assert info.st_mode & 0o077 == 0, f"{relative} is {oct(info.st_mode & 0o777)}"
                continue
            allowed = 0o700 if path.name in ("mailgate.py", "aliasd.py", "mailgated.py") else 0o600
            assert info.st_mode & 0o777 & ~allowed == 0, f"{relative} is {oct(info.st_mode & 0o777)}"
            assert path.parent.stat().st_mode & 0o077 == 0, f"{path.parent.relative_to(root)} is not 0700"
            checked += 1
    assert checked > 10
    master_cf = next(root.glob("gateway*/postfix/master.cf")).read_text()
    assert "user=nobody" not in master_cf
    # The lab stack delivers over LMTP (the default): the resident mailgate runs as the
    # mailgate's own user.
    mailgated = [p for p in lab.state.processes if p.role.startswith("gateway-") and p.role.endswith("-mailgated")]
    assert len(mailgated) == len(lab.stack.gateways)
    assert {pwd.getpwuid(os.stat(f"/proc/{p.pid}").st_uid).pw_name for p in mailgated} == {users.MAILGATE_USER}


@pytest.mark.stacks("lab")
def test_up_is_idempotent_and_a_dead_role_is_restarted_from_its_journal(lab: Lab) -> None:
    before = {p.role: p.pid for p in lab.state.processes}
    assert {"bind", "odoo", "receiver-postfix", "receiver-opendkim", "receiver-opendmarc",
            "gateway-mx1.acme.test-postfix", "gateway-mx1.acme.test-opendkim"} <= set(before)
    again = mailstack("lab", "up", "--stack-file", str(lab.stack_file), *lab.opts(), check=True)
    records = len(json.loads((lab.root / "records.json").read_text())["owned"])
    assert "already up" in again.stdout and f"{records} same, " in again.stdout and " unmanaged" in again.stdout
    assert {p.role: p.pid for p in lab.state.processes} == before
    [bind] = [p for p in lab.state.processes if p.role == "bind"]
    assert bind.stop()
    code, findings = check_json(lab, "--probe-wait", "5")
    assert code == 1
    dns_groups = ("e2e", "spf", "dkim", "dmarc", "mx", "published")
    wrongly_passed = [f for f in findings if f["id"].split(".")[0] in dns_groups and f["status"] == "pass"]
    assert wrongly_passed == [], [(f["id"], f["summary"]) for f in wrongly_passed]
    repaired = mailstack("lab", "up", "--stack-file", str(lab.stack_file), *lab.opts(), check=True)
    assert "restarted: bind" in repaired.stdout and f"{records} same, " in repaired.stdout, "records come back from BIND's journal"
    code, findings = check_json(lab, "--only", "e2e", "--only", "published")
    assert [f for f in findings if f["status"] in ("fail", "error")] == [] and code == 0


# 200 customers, one message each: Odoo 17's loop detection drops the 21st message one
# sender writes within 120 minutes (mail.gateway.loop.threshold/minutes, _detect_loop_sender).
SEND_MANY = """
import json, smtplib, sys
count, tag, gateway, source = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
replies = []
with smtplib.SMTP(gateway, 25, source_address=(source, 0), local_hostname="mx.recipient.test", timeout=60) as client:
    for n in range(count):
        raw = (f"From: customer{n}@recipient.test\\r\\nTo: sales@acme.test\\r\\nSubject: load {n}\\r\\n"
               f"Message-ID: <load-{tag}-{n}@recipient.test>\\r\\n\\r\\nmessage {n}\\r\\n").encode()
        refused = client.sendmail(f"customer{n}@recipient.test", ["sales@acme.test"], raw)
        replies.append(not refused)
print(json.dumps(replies))
"""


def queue(lab: Lab) -> list[dict[str, object]]:
    out = in_lab("postqueue", "-c", str(lab.root / "gateway1" / "postfix"), "-j").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def queued_for_odoo(lab: Lab, queue_name: str | None = None) -> int:
    """Messages in the gateway's queue for Odoo's sales@ (others, e.g. a probe deferred
    while BIND was down, do not count)."""
    return sum(1 for m in queue(lab) if "sales@acme.test" in json.dumps(m["recipients"]) and queue_name in (None, m["queue_name"]))


@pytest.mark.stacks("lab")
def test_odoo_down_while_200_arrive_then_all_delivered_exactly_once(lab: Lab) -> None:
    state = lab.state
    gateway, outside = lab.topology.host("mx1.acme.test").ipv4, lab.topology.receiver.ipv4
    assert gateway and outside
    maillog = lab.root / "gateway1" / "log" / "postfix.log"
    log_start = maillog.stat().st_size
    [odoo] = [p for p in state.processes if p.role == "odoo"]
    assert odoo.stop()
    tag = uuid.uuid4().hex[:8]
    sent = in_lab(sys.executable, "-c", SEND_MANY, "200", tag, gateway, outside)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == [True] * 200, "the gateway accepts all 200 while Odoo is down"
    wait_for(lambda: queued_for_odoo(lab, "deferred") == 200, 120, what="all 200 deferred while Odoo is down")
    mailstack("lab", "up", "--stack-file", str(lab.stack_file), *lab.opts(), check=True)  # restarts the stand-in
    assert in_lab("postqueue", "-c", str(lab.root / "gateway1" / "postfix"), "-f").returncode == 0
    db = lab.root / "odoo" / "odoo-standin.sqlite3"

    def stored() -> dict[str, int]:
        with sqlite3.connect(db) as connection:
            rows = connection.execute("SELECT message_id, COUNT(*) FROM messages WHERE message_id LIKE ? GROUP BY message_id", (f"<load-{tag}-%",)).fetchall()
        return dict(rows)

    wait_for(lambda: len(stored()) == 200 and not queued_for_odoo(lab), 300, what="all 200 messages in Odoo")
    assert set(stored().values()) == {1}, "each message exactly once"
    log = maillog.read_bytes()[log_start:].decode(errors="replace")
    assert "status=bounced" not in log and "status=deferred" in log


@pytest.mark.stacks("lab")
def test_no_queued_mail_survives_into_the_next_lab(lab: Lab) -> None:
    """Mail queued when the lab goes down (Odoo unreachable) never reaches the next lab."""
    gateway, outside = lab.topology.host("mx1.acme.test").ipv4, lab.topology.receiver.ipv4
    assert gateway and outside
    [odoo] = [p for p in lab.state.processes if p.role == "odoo"]
    assert odoo.stop()
    tag = uuid.uuid4().hex[:8]
    sent = in_lab(sys.executable, "-c", SEND_MANY, "3", tag, gateway, outside)
    assert sent.returncode == 0 and json.loads(sent.stdout) == [True] * 3, sent.stderr
    wait_for(lambda: queued_for_odoo(lab) == 3, 60, what="three messages queued for Odoo")
    mailstack("lab", "down", *lab.opts(), check=True)
    assert not (lab.root / "gateway1" / "spool").exists(), "lab down empties the gateway's queue"
    mailstack("lab", "up", "--stack-file", str(lab.stack_file), *lab.opts(), check=True)
    assert queue(lab) == []
    with sqlite3.connect(lab.root / "odoo" / "odoo-standin.sqlite3") as connection:
        assert connection.execute("SELECT COUNT(*) FROM messages WHERE message_id LIKE ?", (f"<load-{tag}-%",)).fetchone() == (0,)


@pytest.mark.stacks("lab")
def test_check_takes_mailstack_checks_output_options(lab: Lab, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    result = mailstack("lab", "check", "--only", "e2e", "--format", "junit", "--output", str(report), *lab.opts())
    assert result.returncode == 0, result.stdout + result.stderr
    suites = ET.parse(report).getroot()
    assert suites.iter("testcase") and not list(suites.iter("failure")) and not list(suites.iter("error"))
    sarif = mailstack("lab", "check", "--only", "e2e", "--format", "sarif", *lab.opts())
    assert sarif.returncode == 0 and json.loads(sarif.stdout)["version"] == "2.1.0"


def test_each_stack_keeps_its_own_state_and_down_stops_everything(lab: Lab) -> None:
    """Runs last for each stack (the fixture's ``down`` then finds nothing to stop): its
    own directory (keys, CA, queues) under the shared state directory, then ``down``
    leaves no process, namespace or queue behind."""
    state = lab.state
    assert state.stack_root.name.startswith(f"{lab.name[:12]}-") and (state.stack_root / "ca.pem").exists()
    others = [p for p in (STATE_DIR / "stacks").iterdir() if p != state.stack_root]
    assert all(not (p / "ca.pem").exists() or (p / "ca.pem").read_bytes() != (state.stack_root / "ca.pem").read_bytes() for p in others)
    processes = state.processes
    result = mailstack("lab", "down", *lab.opts(), check=True)
    assert f"namespace {NAMESPACE} removed" in result.stdout
    assert not any(p.alive() for p in processes)
    assert not netns.exists(NAMESPACE) and not Path("/etc/netns", NAMESPACE).exists()
    assert LabState.load(STATE_DIR).processes == [] and not list(state.stack_root.glob("*/spool"))
    status = mailstack("lab", "status", *lab.opts())
    assert status.returncode == 1 and "no lab is up" in status.stdout



# -- a user's own stack: Odoo authenticating at the gateways (gateway.smtpAuth) -----------

def test_a_stack_with_smtp_auth_is_proven_with_the_login_and_refused_without_it(tmp_path: Path) -> None:
    """No example stack uses ``gateway.smtpAuth``: a user's copy of onpremise with it. The
    probes log in as Odoo from an address outside ``odooAddresses`` (the lab's outside
    sender), so only the gateway's real Cyrus SASL login lets them through: passing at the
    receiver with the login, ``535`` with a wrong password."""
    require_root()
    stack_file = tmp_path / "Pulumi.auth.yaml"
    text = project.stack_path("onpremise").read_text(encoding="utf-8")
    stack_file.write_text(text.replace("    odooAddresses: [10.0.0.5]\n", "    odooAddresses: [10.0.0.5]\n    smtpAuth:\n      user: odoo\n"))
    assert stackfile.load(stack_file).gateway.smtp_auth is not None  # type: ignore[union-attr]
    namespace, state_dir = f"mslabu{uuid.uuid4().hex[:6]}", Path("/var/lib/mailstack-lab-tests") / uuid.uuid4().hex[:8]
    opts = ("--state-dir", str(state_dir), "--namespace", namespace)

    def check(**env: str) -> list[dict[str, str]]:
        result = subprocess.run([sys.executable, "-m", "mailstack.cli", "lab", "check", "--only", "e2e", "--format", "json", *opts],
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        assert result.stdout, result.stderr
        return [f for f in json.loads(result.stdout)["checks"] if f["id"] == "e2e.outbound.gateway"]

    try:
        mailstack("lab", "up", "--stack-file", str(stack_file), *opts, check=True)
        proven = check()
        assert len(proven) == 3 and all(f["status"] == "pass" and "with SMTP AUTH as odoo" in f["summary"] for f in proven), proven
        log = next((LabState.load(state_dir).stack_root / "gateway1" / "log").glob("postfix.log")).read_text()
        assert "sasl_method=PLAIN, sasl_username=odoo" in log
        refused = check(MAILSTACK_E2E_SUBMIT_PASSWORD="not-the-password")
        assert refused and all(f["status"] == "fail" and "AUTH refused: 535" in f["summary"] for f in refused), refused
    finally:
        mailstack("lab", "down", "--purge", *opts)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert not netns.exists(namespace)
