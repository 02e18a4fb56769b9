"""Every example stack, published exactly as planned on a real BIND, passes every DNS
check: nothing fails, nothing errors (SMTP is left out: the example gateways' addresses
are documentation addresses, not loopback servers)."""

from __future__ import annotations

import pytest

from mailstack.checks.engine.finding import Status
from tests import check_zones as z
from tests.checks_fixtures import context, dns_lab, policy_server, run  # noqa: F401 - fixtures

DNS_GROUPS = ("spf", "dkim", "dmarc", "mx", "mta-sts", "tls-rpt", "published", "odoo")


@pytest.mark.parametrize("name", z.STACKS)
def test_example_stack_passes(dns_lab, policy_server, name: str) -> None:
    keys = dns_lab.keys
    ctx = context(
        dns_lab, stack=z.load_stack(name), gateway_key=keys.public_pem("gateway"), private_key=keys.private_pem["gateway"],
        https=policy_server.options,
    )
    findings = run(ctx, *DNS_GROUPS)
    bad = [f for f in findings if f.status in (Status.FAIL, Status.ERROR, Status.WARN)]
    assert not bad, "\n".join(f"{f.id} {f.status}: {f.summary} {f.detail} {f.found}" for f in bad)
    assert sum(f.status is Status.PASS for f in findings) >= 10
