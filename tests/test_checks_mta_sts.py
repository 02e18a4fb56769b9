"""``mta-sts.policy``: the policy file fetched over HTTPS (RFC 8461 §3.3) from a real TLS
server on loopback, resolved through the test BIND, compared with the declaration."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.checks.engine.finding import Status
from mailstack.checks.probes import mta_sts as mta_sts_probe
from mailstack.config.stack import from_config
from mailstack.rules import mta_sts
from tests import check_zones as z
from tests.checks_fixtures import context, dns_lab, of, policy_server, run  # noqa: F401


def declared(domain: str) -> Any:
    return from_config({
        "domain": domain,
        "odoo": {"hosting": "onpremise", "url": f"https://odoo.{domain}", "database": "db"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway"},
        "gateways": [{"hostname": f"gw.{domain}", "ipv4": "127.0.10.77"}],
        "mtaSts": {"mode": "enforce"},
        "dns": {"zone": "broken.test"},
    })


def policy_findings(lab, server, **kwargs):  # type: ignore[no-untyped-def]
    return of(run(context(lab, https=server.options, **kwargs), "mta-sts"), "mta-sts.policy")


def test_declared_policy_served_as_declared(dns_lab, policy_server) -> None:
    found = policy_findings(dns_lab, policy_server, stack=z.load_stack("onpremise"))
    assert [f.status for f in found] == [Status.PASS]
    assert "mode=enforce max_age=604800 mx=mx1.example.net mx2.example.net" in found[0].summary


def test_undeclared_domain_with_a_policy_record(dns_lab, policy_server) -> None:
    found = policy_findings(dns_lab, policy_server, domain="example.net")
    assert [f.status for f in found] == [Status.PASS]
    none = policy_findings(dns_lab, policy_server, domain="void.broken.test")
    assert [f.status for f in none] == [Status.SKIP]


@pytest.mark.parametrize(
    "domain, status, text",
    [
        ("sts-wrong.broken.test", Status.FAIL, "differs from the declaration"),
        ("sts-404.broken.test", Status.FAIL, "HTTP 404"),
        ("sts-badcert.broken.test", Status.FAIL, "certificate of mta-sts.sts-badcert.broken.test is not valid"),
        ("sts-garbage.broken.test", Status.FAIL, "is not a 'key: value' line"),
        ("sts-html.broken.test", Status.WARN, "not text/plain"),
        ("sts-down.broken.test", Status.ERROR, "cannot fetch from 127.0.10.41"),
    ],
)
def test_broken_policy_hosts(dns_lab, policy_server, domain: str, status: Status, text: str) -> None:
    found = policy_findings(dns_lab, policy_server, stack=declared(domain))
    assert [f.status for f in found] == [status]
    assert text in found[0].summary
    if status is Status.FAIL and "differs" in text:
        assert found[0].expected == "mode=enforce max_age=604800 mx=gw.sts-wrong.broken.test"
        assert found[0].found == "mode=testing max_age=604800 mx=gw.sts-wrong.broken.test"


def test_a_testing_policy_whose_server_sends_no_last_modified_warns_since_unknown(dns_lab, policy_server) -> None:
    """This policy server sends no Last-Modified: how long the policy has been in
    testing cannot be told, so the mode warns and says why."""
    found = of(run(context(dns_lab, https=policy_server.options, stack=declared("sts-wrong.broken.test")), "mta-sts"), "mta-sts.mode")
    assert [f.status for f in found] == [Status.WARN]
    assert "mode testing, and since when is not known (the policy server sends no Last-Modified)" in found[0].summary


@pytest.mark.parametrize(("mode", "age_days", "left"), [
    ("enforce", None, False), ("enforce", 400, False),
    ("testing", 29.9, False), ("testing", 30.1, True), ("testing", None, True),
    ("none", 1, False), ("none", 31, True),
])
def test_mode_left_longer_than_the_grace_is_a_problem(mode: str, age_days: float | None, left: bool) -> None:
    now = 2_000_000_000.0
    changed = None if age_days is None else now - age_days * 86400
    assert (mta_sts.mode_left(mode, changed, now) is not None) is left


@pytest.mark.parametrize(("header", "expected"), [
    ("Wed, 02 Dec 2026 10:00:00 GMT", 1796205600.0),
    ("Wednesday, 02-Dec-26 10:00:00 GMT", 1796205600.0),  # RFC 850 form, still to be accepted (RFC 9110 §5.6.7)
    ("yesterday", None), ("", None), (None, None),
    ("Wed, 02 Dec 2026 10:00:00", None),  # no zone: not an HTTP-date
])
def test_http_date(header: str | None, expected: float | None) -> None:
    assert mta_sts_probe.http_date(header) == expected
