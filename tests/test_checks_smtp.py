"""SMTP checks against real Postfix instances on loopback, each running the gateway
configuration ``modules.render`` produces (``modules.lab.postfix.PostfixInstance``),
with a few main.cf overrides to make the broken variants:

- good.smtp.test   127.0.10.21  the rendered gateway as is (STARTTLS with a certificate
                   for its MX name, relaying refused, unknown recipients rejected),
                   postmaster@/abuse@ routed to ``inbound.postmaster`` (delivery
                   deferred: ``defer_transports``, so nothing leaves the queue)
- relay.smtp.test  127.0.10.22  an open relay accepting every recipient, certificate
                   for another name
- plain.smtp.test  127.0.10.23  no STARTTLS; rendered with fewer aliases than declared;
                   refuses postmaster@ and abuse@ (as servers that forgot them do)
- refuse.smtp.test 127.0.10.24  refuses EHLO
- picky.smtp.test  127.0.10.26  refuses every sender at RCPT (the probe, not the recipient)
- down.smtp.test   127.0.10.25  nothing listens (the checks report ``error``)

The OpenDKIM milter is switched off (``smtpd_milters =``): RCPT probing never reaches
it, and the checks never send DATA. Client name lookups are off so Postfix sends no DNS
query outside loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack import plan
from mailstack.checks.engine.finding import Status
from mailstack.config.stack import from_config
from mailstack.core.model import MailDomain
from mailstack.gateway import render
from mailstack.lab import netns
from mailstack.lab.postfix import PostfixInstance, lab_layout, make_workdir
from mailstack.lab.tls import write_self_signed
from tests.checks_fixtures import context, dns_lab, of, run  # noqa: F401
from tests.servers import require_binary, require_root

SMTP_PORT = 5310
PASS, WARN, FAIL, ERROR, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.SKIP


#: Where the good gateway routes postmaster@ and abuse@ (mailstack:inbound.postmaster).
ROLE_DESTINATIONS = {"good": "it-ops@ops.example"}


def declaration(name: str, address: str, aliases: list[str], alias_domains: list[str] | None = None) -> MailDomain:
    raw: dict[str, Any] = {
        "aliasDomains": alias_domains or [],
        "domain": f"{name}.smtp.test",
        "odoo": {"hosting": "onpremise", "url": "http://127.0.10.30:8069", "database": "db"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway", "aliases": aliases, **({"postmaster": ROLE_DESTINATIONS[name]} if name in ROLE_DESTINATIONS else {})},
        "gateways": [{"hostname": f"mx.{name}.smtp.test", "ipv4": address}],
        "gateway": {"odooAddresses": ["127.0.10.30/32"], "mailgate": {"login": "admin", "passwordFile": "/nonexistent/odoo-password"}},
        "dns": {"zone": "smtp.test"},
    }
    return from_config(raw)


INSTANCES: dict[str, tuple[str, list[str], str, dict[str, str]]] = {
    # name: (address, aliases rendered, certificate name, main.cf overrides)
    # nothing is delivered (a probe message to postmaster@ stays queued, rewritten)
    "good": ("127.0.10.21", ["sales", "support"], "mx.good.smtp.test", {"defer_transports": "smtp, odoo"}),
    # the classic open relay: every client is "my network"; no recipient list
    "relay": ("127.0.10.22", ["sales"], "wrong.example", {"mynetworks": "0.0.0.0/0", "relay_recipient_maps": "",
                                                          "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}),
    "plain": ("127.0.10.23", ["sales"], "mx.plain.smtp.test", {
        "smtpd_tls_security_level": "none",
        "smtpd_recipient_restrictions": "check_recipient_access inline:{postmaster@plain.smtp.test=REJECT, abuse@plain.smtp.test=REJECT}, "
                                        "reject_non_fqdn_recipient, reject_unlisted_recipient, permit"}),
    "refuse": ("127.0.10.24", ["sales"], "mx.refuse.smtp.test", {"smtpd_delay_reject": "no", "smtpd_helo_restrictions": "reject"}),
    # refuses every sender at RCPT time (as a HELO or sender-domain rule would)
    "picky": ("127.0.10.26", ["sales"], "mx.picky.smtp.test", {"smtpd_sender_restrictions": "reject"}),
}


@pytest.fixture(scope="module")
def postfixes(dns_lab) -> Iterator[dict[str, PostfixInstance]]:  # type: ignore[no-untyped-def]
    require_root()
    require_binary("postfix")
    with _exclusive():
        yield from _run_instances()


@contextlib.contextmanager
def _exclusive(timeout: float = 300) -> Iterator[None]:
    """One holder at a time on this host: the instances use fixed addresses and ports,
    and two test runs at once (several engineers, one machine) would clash."""
    with open("/tmp/mschk-smtp-tests.lock", "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_instances() -> Iterator[dict[str, PostfixInstance]]:
    started: dict[str, PostfixInstance] = {}
    workdirs: list[Path] = []
    added: list[str] = []
    try:
        for name, (address, aliases, cert_name, overrides) in INSTANCES.items():
            if netns.add_address(address):  # Postfix listens only on configured addresses
                added.append(address)
            stack = declaration(name, address, aliases)
            workdir = make_workdir("mschk-smtp-")
            workdirs.append(workdir)
            cert, key = write_self_signed(workdir, cert_name)
            assert stack.gateway is not None
            # recipientCheck static: no Odoo here for mailstack-aliasd to ask (tests/test_gateway_live.py runs it).
            settings = dataclasses.replace(stack.gateway, tls=dataclasses.replace(stack.gateway.tls, cert=str(cert), key=str(key)),
                                           recipient_check="static")
            layout = lab_layout(workdir, address, smtp_port=SMTP_PORT, submission_port=SMTP_PORT + 1, milter_port=SMTP_PORT + 2)
            files = render.render(plan.build(stack), settings, layout=layout)
            instance = PostfixInstance(
                workdir,
                files,
                overrides={"inet_interfaces": address, "smtpd_milters": "", "non_smtpd_milters": "", "smtpd_peername_lookup": "no", **overrides},
            )
            instance.start()
            started[name] = instance
        yield started
    finally:
        for instance in started.values():
            instance.stop()
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        for address in added:
            netns.remove_address(address)


def smtp_run(lab, name: str, aliases: list[str]):  # type: ignore[no-untyped-def]
    address = INSTANCES[name][0] if name in INSTANCES else "127.0.10.25"
    ctx = context(lab, stack=declaration(name, address, aliases), smtp_port=SMTP_PORT)
    return run(ctx, "smtp")


def statuses_of(findings, id: str) -> list[Status]:  # type: ignore[no-untyped-def]
    return [f.status for f in of(findings, id)]


def test_rendered_gateway_passes_every_smtp_check(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "good", ["sales", "support"])
    for id in ("smtp.banner", "smtp.starttls", "smtp.open-relay", "smtp.unknown-recipient", "smtp.aliases"):
        assert statuses_of(findings, id) == [PASS], (id, [f.summary for f in of(findings, id)])
    assert "4 declared addresses accepted" in of(findings, "smtp.aliases")[0].summary  # catchall, bounce, sales, support
    assert "mx.good.smtp.test [127.0.10.21]:5310" in of(findings, "smtp.banner")[0].summary


def test_open_relay_accepting_everything_with_a_wrong_certificate(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "relay", ["sales"])
    assert statuses_of(findings, "smtp.open-relay") == [FAIL]
    assert "OPEN RELAY" in of(findings, "smtp.open-relay")[0].summary
    assert statuses_of(findings, "smtp.unknown-recipient") == [FAIL]
    starttls = of(findings, "smtp.starttls")
    assert [f.status for f in starttls] == [FAIL] and starttls[0].found == "wrong.example"
    assert statuses_of(findings, "smtp.banner") == [PASS]


def test_no_starttls_and_undeclared_aliases_refused(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "plain", ["sales", "support"])  # rendered with sales only
    assert statuses_of(findings, "smtp.starttls") == [FAIL]
    assert "not offered" in of(findings, "smtp.starttls")[0].summary
    aliases = of(findings, "smtp.aliases")
    assert [f.status for f in aliases] == [FAIL] and "support@plain.smtp.test" in aliases[0].detail
    assert statuses_of(findings, "smtp.open-relay") == [PASS]


def test_alias_domains_are_probed_too(dns_lab, postfixes) -> None:
    stack = declaration("good", INSTANCES["good"][0], ["sales", "support"], ["alias.smtp.test"])
    findings = run(context(dns_lab, stack=stack, smtp_port=SMTP_PORT), "smtp")
    aliases = of(findings, "smtp.aliases")  # one MX shared by both domains: one session
    assert [f.status for f in aliases] == [FAIL]
    assert "catchall@alias.smtp.test" in aliases[0].detail and "good.smtp.test:" not in aliases[0].detail
    assert "4 declared address(es) refused" in aliases[0].summary


def test_refused_ehlo_fails_the_banner_check(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "refuse", ["sales"])
    assert statuses_of(findings, "smtp.banner") == [FAIL]
    # without a greeting accepted, MAIL FROM:<> is refused: RCPT results are undecided
    for id in ("smtp.open-relay", "smtp.unknown-recipient", "smtp.aliases"):
        assert statuses_of(findings, id) == [ERROR], id
        assert "MAIL FROM:<> refused" in of(findings, id)[0].summary


def test_a_refusal_of_the_probe_itself_is_an_error(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "picky", ["sales"])
    for id in ("smtp.open-relay", "smtp.unknown-recipient", "smtp.aliases"):
        assert statuses_of(findings, id) == [ERROR], (id, [f.summary for f in of(findings, id)])
        assert "refused the probe itself" in of(findings, id)[0].summary
    assert statuses_of(findings, "smtp.banner") == [PASS]


def test_unreachable_mx_is_an_error_not_a_failure(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "down", ["sales"])
    for id in ("smtp.banner", "smtp.starttls", "smtp.open-relay", "smtp.unknown-recipient", "smtp.aliases"):
        assert statuses_of(findings, id) == [ERROR], id
    assert "127.0.10.25" in of(findings, "smtp.banner")[0].summary


def test_null_mx_domain_skips_smtp(dns_lab) -> None:
    stack = from_config({
        "domain": "nullmx.broken.test", "odoo": {"hosting": "onpremise", "url": "http://127.0.10.30:8069", "database": "db"},
        "outbound": [{"spf": "ip4:127.0.10.50"}], "inbound": {"mode": "none"}, "dns": {"zone": "broken.test"},
    })
    findings = run(context(dns_lab, stack=stack), "smtp")
    assert {f.status for f in findings} == {SKIP}


def test_postmaster_and_abuse_accepted_by_the_rendered_gateway(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "good", ["sales", "support"])
    for id in ("smtp.postmaster", "smtp.abuse"):
        assert statuses_of(findings, id) == [PASS], (id, [f.summary for f in of(findings, id)])
    assert "postmaster@good.smtp.test accepted" in of(findings, "smtp.postmaster")[0].summary


def test_postmaster_refused_fails_and_abuse_refused_warns(dns_lab, postfixes) -> None:
    findings = smtp_run(dns_lab, "plain", ["sales"])
    (postmaster,) = of(findings, "smtp.postmaster")
    assert postmaster.status is FAIL and "postmaster@plain.smtp.test refused at RCPT" in postmaster.summary
    assert "554" in postmaster.detail or "5.7.1" in postmaster.detail, postmaster.detail
    assert statuses_of(findings, "smtp.abuse") == [WARN]
    assert statuses_of(findings, "smtp.aliases") == [PASS]  # the role probes are not declared aliases
    down = smtp_run(dns_lab, "down", ["sales"])
    assert statuses_of(down, "smtp.postmaster") == [ERROR] and statuses_of(down, "smtp.abuse") == [ERROR]


def test_role_addresses_are_rewritten_to_the_declared_mailbox(dns_lab, postfixes) -> None:
    """Postfix itself (not our code) rewrites postmaster@ and abuse@ to inbound.postmaster:
    the queued message's envelope recipients are the declared mailbox."""
    import smtplib

    good = postfixes["good"]
    before = {m.get("queue_id") for m in good.queue()}  # what earlier tests of the module left queued there
    with smtplib.SMTP(INSTANCES["good"][0], SMTP_PORT, timeout=10) as client:
        client.ehlo("probe.smtp.test")
        refused = client.sendmail("", ["postmaster@good.smtp.test", "abuse@good.smtp.test"],
                                  b"From: probe@smtp.test\r\nTo: postmaster@good.smtp.test\r\nSubject: role route\r\n\r\nhello\r\n")
    assert refused == {}

    def queued() -> list[dict[str, Any]]:
        return [m for m in good.queue() if m.get("queue_id") not in before
                and any(r.get("address") == ROLE_DESTINATIONS["good"] for r in m.get("recipients", []))]

    from mailstack.lab.postfix import wait_for

    (message,) = wait_for(queued, timeout=30, what="the role message in the queue")
    assert {r["address"] for r in message["recipients"]} == {ROLE_DESTINATIONS["good"]}
    # the other addresses keep their transport to the mailgate (no virtual alias for them)
    assert good.postconf("virtual_alias_maps") == "hash:${config_directory}/role_addresses"
