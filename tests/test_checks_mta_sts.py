"""``mta-sts.policy``: the policy file fetched over HTTPS (RFC 8461 §3.3) from a real TLS
server on loopback, resolved through the test BIND, compared with the declaration."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.checks.engine.finding import Status
from mailstack.config.stack import from_config
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
