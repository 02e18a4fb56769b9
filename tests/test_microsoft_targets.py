"""Microsoft 365 as admins really configure it: the tenant's exact DKIM CNAME targets
and MX host (classic ``….onmicrosoft.com`` / ``….mail.protection.outlook.com`` and the
new ``….dkim.mail.microsoft`` / ``….mx.microsoft``), the formula only as the default.
The live side (CNAMEs followed to the keys on real BIND, the lab's receiver verifying
selector1 through the new target) is in tests/test_checks_dkim_cname.py and the lab's
onpremise-m365 stack."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigErrors

NEW1 = "selector1-contoso-example._domainkey.contoso.n-v1.dkim.mail.microsoft"
NEW2 = "selector2-contoso-example._domainkey.contoso.n-v1.dkim.mail.microsoft"
NEW_MX = "contoso-example.l-v1.mx.microsoft"


def stack(dkim: Any = None, mx: Any = "microsoft", aliases: list[str] | None = None) -> dict[str, Any]:
    sender: dict[str, Any] = {"type": "microsoft", "tenant": "contoso"}
    if dkim is not None:
        sender["dkim"] = dkim
    return {
        "domain": "contoso.example",
        **({"aliasDomains": aliases} if aliases else {}),
        "odoo": {"hosting": "onpremise", "url": "https://erp.contoso.example", "database": "contoso"},
        "outbound": [sender],
        "inbound": {"mode": "imap", "mx": mx},
    }


def records(raw: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(r.name, r.type, r.content) for r in plan.build(from_config(raw)).records if r.type in ("CNAME", "MX")}


def errors(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigErrors) as excinfo:
        plan.build(from_config(raw))
    return [str(e) for e in excinfo.value.errors]


def test_the_formula_is_the_default() -> None:
    assert records(stack()) == {
        ("selector1._domainkey.contoso.example", "CNAME", "selector1-contoso-example._domainkey.contoso.onmicrosoft.com"),
        ("selector2._domainkey.contoso.example", "CNAME", "selector2-contoso-example._domainkey.contoso.onmicrosoft.com"),
        ("contoso.example", "MX", "contoso-example.mail.protection.outlook.com"),
    }


def test_given_targets_and_mx_are_planned_as_given_and_other_names_keep_the_formula() -> None:
    raw = stack({"contoso.example": {"selector1": NEW1, "selector2": NEW2.upper()}}, {"microsoft": NEW_MX}, ["contoso.test"])
    found = records(raw)
    assert ("selector1._domainkey.contoso.example", "CNAME", NEW1) in found
    assert ("selector2._domainkey.contoso.example", "CNAME", NEW2) in found  # normalised
    assert ("selector1._domainkey.contoso.test", "CNAME", "selector1-contoso-test._domainkey.contoso.onmicrosoft.com") in found
    assert {(n, c) for n, t, c in found if t == "MX"} == {("contoso.example", NEW_MX), ("contoso.test", NEW_MX)}
    assert [r.priority for r in plan.build(from_config(raw)).records if r.type == "MX"] == [0, 0]


@pytest.mark.parametrize(("dkim", "mx", "expected"), [
    ({"contoso.example": {"selector1": NEW1}}, "microsoft",
     "mailstack:outbound[0].dkim.contoso.example.selector2: is required: Microsoft 365 publishes both selectors (copy both CNAME targets from the admin centre)"),
    ({"contoso.example": {"selector1": NEW1, "selector2": "x y._domainkey.mail.microsoft"}}, "microsoft",
     "mailstack:outbound[0].dkim.contoso.example.selector2: 'x y._domainkey.mail.microsoft': label 'x y' has characters other than letters, digits, hyphens and underscores"),
    ({"contoso.example": {"selector1": NEW1, "selector2": "192.0.2.1"}}, "microsoft",
     "mailstack:outbound[0].dkim.contoso.example.selector2: '192.0.2.1' is an IP address, not a DNS name"),
    ({"contoso.example": {"selector1": NEW1, "selector2": "contoso-example.l-v1.mx.microsoft"}}, "microsoft",
     "mailstack:outbound[0].dkim.contoso.example.selector2: 'contoso-example.l-v1.mx.microsoft' is not the name of a DKIM key (<selector>._domainkey.<domain>): copy the CNAME's target, the value it points to"),
    ({"contoso.example": {"selector1": NEW1, "selector2": "selector2._domainkey.contoso.example"}}, "microsoft",
     "mailstack:outbound[0].dkim.contoso.example.selector2: is the CNAME's own name (selector2._domainkey.contoso.example): give the target it points to, from the admin centre"),
    ({"contoso.example": {"selector1": NEW1, "selector2": NEW2, "selector3": NEW2}}, "microsoft",
     "mailstack:outbound[0].dkim.contoso.example.selector3: unknown key; did you mean mailstack:outbound[0].dkim.contoso.example.selector2? (expected one of selector1, selector2)"),
    ({"fabrikam.example": {"selector1": NEW1, "selector2": NEW2}}, "microsoft",
     "mailstack:outbound[0].dkim.fabrikam.example: is not a sending name of this stack (contoso.example)"),
    (["selector1"], "microsoft",
     "mailstack:outbound[0].dkim: must map each sending domain to {selector1: HOST, selector2: HOST}, the CNAME targets the admin centre shows"),
    (None, {"microsoft": "mx;rm -rf /.mx.microsoft"}, None),
])
def test_given_names_are_validated_as_host_names(dkim: Any, mx: Any, expected: str | None) -> None:
    found = errors(stack(dkim, mx))
    if expected is None:
        assert len(found) == 1 and found[0].startswith("mailstack:inbound.mx.microsoft: "), found
    else:
        assert found == [expected]
