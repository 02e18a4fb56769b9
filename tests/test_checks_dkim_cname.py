"""``dkim.cname`` on the check suite's real BIND: Microsoft 365's selectors point at the
targets the stack gives (onpremise-m365: the new ``….dkim.mail.microsoft`` ones), the
key behind them verified by the other ``dkim.*`` checks; a declaration on the formula
while the zone has the tenant's new targets fails, naming the record to publish."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailstack.checks.engine.finding import Status
from tests import check_zones as z
from tests.checks_fixtures import DnsLab, context, dns_lab, of, run, stack_from, statuses

__all__ = ["dns_lab"]
NEW = "selector1-contoso-example._domainkey.contoso.n-v1.dkim.mail.microsoft"


@pytest.fixture(scope="module")
def lab(dns_lab: DnsLab) -> Iterator[DnsLab]:
    yield dns_lab


def test_the_given_new_form_targets_are_followed_to_a_valid_key(lab: DnsLab) -> None:
    findings = run(context(lab, stack=z.load_stack("onpremise-m365")), "dkim")
    cnames = {f.summary for f in of(findings, "dkim.cname") if f.status == Status.PASS}
    assert f"selector1._domainkey.contoso.example: CNAME to {NEW}" in cnames, of(findings, "dkim.cname")
    for id in ("dkim.cname", "dkim.resolves", "dkim.syntax", "dkim.revoked"):
        assert statuses([f for f in findings if "selector" in f.summary], id) == {Status.PASS}, of(findings, id)


def test_a_declaration_on_the_formula_fails_against_the_tenants_new_targets(lab: DnsLab) -> None:
    stack = stack_from({
        "domain": "contoso.example",
        "odoo": {"hosting": "onpremise", "url": "https://erp.contoso.example", "database": "contoso"},
        "outbound": [{"type": "microsoft", "tenant": "contoso"}],
        "inbound": {"mode": "imap", "mx": {"microsoft": "contoso-example.l-v1.mx.microsoft"}},
    })
    [one, two] = of(run(context(lab, stack=stack), "dkim"), "dkim.cname")
    assert one.status == two.status is Status.FAIL
    assert one.found == NEW
    assert one.fix == "selector1._domainkey.contoso.example. 3600 IN CNAME selector1-contoso-example._domainkey.contoso.onmicrosoft.com."
