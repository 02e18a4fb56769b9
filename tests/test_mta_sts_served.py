"""MTA-STS served as the gateway deploys it: Debian's nginx running the site
``mailstack.gateway.render`` renders (``nginx/conf.d/mailstack-mta-sts.conf``) inside
the lab's main configuration (``mailstack.lab.nginx``), fetched by the checks over
real HTTPS and resolved through the check suite's BIND. Three domains of one stack:
``sts-good`` serves the rendered policy (enforce, its gateways, one week); the others'
files are replaced, as a hand-edited web root would be: ``sts-weak`` (testing, one day,
``*.sts-weak`` which does not match the two-label MX ``a.b.sts-weak``) and ``sts-stale``
(enforce, listing only one of its two live MX hosts)."""

from __future__ import annotations

import http.client
import os
import time
import socket
import ssl
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstack import plan as planning
from mailstack.checks.engine.context import HttpsOptions
from mailstack.checks.engine.finding import Finding, Status
from mailstack.config.stack import from_config
from mailstack.gateway import render
from mailstack.core.errors import ConfigErrors
from mailstack.lab import nginx
from mailstack.lab.process import stop_child
from mailstack.lab.tls import self_signed
from mailstack.plan import Plan
from mailstack.rules import mta_sts
from tests import check_zones as z
from tests.checks_fixtures import DnsLab, context, dns_lab, of, run
from tests.ports import free_port
from tests.servers import require_binary

__all__ = ["dns_lab"]
DOMAINS = ("sts-good.broken.test", "sts-weak.broken.test", "sts-stale.broken.test")
WEAK = "version: STSv1\r\nmode: testing\r\nmx: *.sts-weak.broken.test\r\nmax_age: 86400\r\n"
STALE = "version: STSv1\r\nmode: enforce\r\nmx: mx1.sts-stale.broken.test\r\nmax_age: 604800\r\n"


def stack_plan(mode: str = "enforce", max_age: int = 604800) -> Plan:
    return planning.build(from_config({
        "domain": DOMAINS[0], "aliasDomains": list(DOMAINS[1:]),
        "odoo": {"hosting": "onpremise", "url": f"https://odoo.{DOMAINS[0]}", "database": "db"},
        "outbound": ["gateway"], "inbound": {"mode": "gateway"},
        "gateways": [{"hostname": f"mx1.{DOMAINS[0]}", "ipv4": "127.0.153.21"},
                     {"hostname": f"mx2.{DOMAINS[0]}", "ipv4": "127.0.153.22", "priority": 20}],
        "gateway": {"tls": {"cert": "/etc/ssl/mailstack/fullchain.pem", "key": "/etc/ssl/mailstack/privkey.pem"}},
        "mtaSts": {"mode": mode, "maxAge": max_age},
        "dns": {"zone": "broken.test"},
    }))


@dataclass
class Served:
    dns: DnsLab
    plan: Plan
    https: HttpsOptions
    site: nginx.PolicySite

    def findings(self, **kwargs: object) -> list[Finding]:
        return run(context(self.dns, https=self.https, **kwargs), "mta-sts")  # type: ignore[arg-type]

    def get(self, host: str, path: str) -> tuple[int, str, str]:
        """GET ``path`` from nginx with SNI and Host ``host``, the certificate verified."""
        ctx = ssl.create_default_context(cafile=self.https.cafile)
        connection = http.client.HTTPSConnection(z.STS_ADDRESS, self.https.port, context=ctx, timeout=5)
        connection.sock = ctx.wrap_socket(socket.create_connection((z.STS_ADDRESS, self.https.port), 5), server_hostname=host)
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        return response.status, response.getheader("Content-Type", ""), body


@pytest.fixture(scope="module")
def served(dns_lab: DnsLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_binary("nginx")
    base = tmp_path_factory.mktemp("i15c-nginx")
    cert_pem, key_pem = self_signed([mta_sts.policy_host(d) for d in DOMAINS], days=30, ca=True)
    cert, key = base / "cert.pem", base / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    port = free_port(z.STS_ADDRESS)
    site = nginx.PolicySite(base / "nginx", ((z.STS_ADDRESS, port),))
    plan = stack_plan()
    site.write(plan, str(cert), str(key), {DOMAINS[1]: WEAK, DOMAINS[2]: STALE})
    process = site.start(base / "nginx.log")
    try:
        yield Served(dns_lab, plan, HttpsOptions(port=port, cafile=str(cert), timeout=5), site)
    finally:
        stop_child(process)
    assert process.poll() is not None


def by_url(findings: list[Finding], id: str, domain: str) -> Finding:
    [found] = [f for f in of(findings, id) if f"mta-sts.{domain}" in f.summary or f.summary.startswith(f"{domain}:")]
    return found


def test_the_rendered_site_serves_the_declared_policy_and_every_check_passes(served: Served) -> None:
    """Declared: nginx serves exactly the text the plan's _mta-sts id is the hash of,
    as text/plain; mode, max_age and every live MX pass."""
    findings = served.findings(stack=served.plan.stack)
    good = DOMAINS[0]
    for id in ("mta-sts.policy", "mta-sts.mode", "mta-sts.max-age", "mta-sts.mx"):
        assert by_url(findings, id, good).status is Status.PASS, of(findings, id)
    status, media, body = served.get(mta_sts.policy_host(good), "/.well-known/mta-sts.txt")
    record = next(r for r in served.plan.records if r.name == f"_mta-sts.{good}")
    assert (status, media) == (200, "text/plain") and record.content == mta_sts.txt_value(body)
    assert served.get(mta_sts.policy_host(good), "/.well-known/other.txt")[0] == 404
    assert served.get(mta_sts.policy_host(good), "/")[0] == 404


def policy_file(served: Served, domain: str) -> Path:
    return Path(served.site.layout.host_path(render.policy_path(domain)))


def aged(served: Served, domain: str, days: float) -> None:
    """Make nginx's Last-Modified of ``domain``'s policy ``days`` old (the file's mtime,
    as a deploy leaves it when the policy last changed)."""
    when = time.time() - days * 86400
    os.utime(policy_file(served, domain), (when, when))


def test_a_weak_policy_left_in_testing_warns_on_mode_max_age_and_a_two_label_mx(served: Served) -> None:
    aged(served, DOMAINS[1], 45)
    findings = served.findings(domain=DOMAINS[1])
    mode, age, mx = (by_url(findings, id, DOMAINS[1]) for id in ("mta-sts.mode", "mta-sts.max-age", "mta-sts.mx"))
    assert mode.status is Status.WARN and "mode: enforce" in mode.fix
    assert "mode testing for 45 days (more than 30)" in mode.summary, mode.summary
    assert age.status is Status.WARN and "under one week" in age.summary and "max_age: 604800" in age.fix
    assert mx.status is Status.WARN and "a.b.sts-weak.broken.test" in mx.summary and "mx1.sts-weak" not in mx.summary.split("not matched")[0]


def test_a_policy_put_in_testing_recently_passes_with_the_date_to_enforce_by(served: Served) -> None:
    """nginx's Last-Modified (the file's time, not our code's) says the testing policy is
    ten days old: within the weeks of reading TLS-RPT reports, so no warning; the
    finding names the day to enforce by."""
    aged(served, DOMAINS[1], 10)
    status, _, _ = served.get(mta_sts.policy_host(DOMAINS[1]), "/.well-known/mta-sts.txt")
    assert status == 200
    (mode,) = [by_url(served.findings(domain=DOMAINS[1]), "mta-sts.mode", DOMAINS[1])]
    assert mode.status is Status.PASS and "mode testing since" in mode.summary and "within 30 days" in mode.summary
    deadline = time.strftime("%Y-%m-%d", time.gmtime(policy_file(served, DOMAINS[1]).stat().st_mtime + mta_sts.MODE_GRACE))
    assert f"switch to enforce by {deadline}" in mode.detail


def test_an_enforced_policy_missing_a_live_mx_fails(served: Served) -> None:
    findings = served.findings(domain=DOMAINS[2])
    mx = by_url(findings, "mta-sts.mx", DOMAINS[2])
    assert mx.status is Status.FAIL and "MX mx2.sts-stale.broken.test not matched" in mx.summary
    assert by_url(findings, "mta-sts.mode", DOMAINS[2]).status is Status.PASS


@pytest.mark.parametrize(("pattern", "host", "matches"), [
    ("mx1.example.com", "MX1.example.com.", True),
    ("*.example.com", "mx1.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False),
    ("*.example.com", "mx1.example.org", False),
    ("mx1.example.com", "mx2.example.com", False),
])
def test_mx_patterns_follow_rfc_8461_4_1(pattern: str, host: str, matches: bool) -> None:
    assert mta_sts.mx_matches(pattern, host) is matches


def test_the_policy_id_changes_exactly_when_the_policy_text_does() -> None:
    ids = {(mode, age): next(r.content for r in stack_plan(mode, age).records if r.name == f"_mta-sts.{DOMAINS[0]}")
           for mode in ("enforce", "testing") for age in (604800, 1209600)}
    assert len(set(ids.values())) == 4
    assert ids[("enforce", 604800)] == next(r.content for r in stack_plan().records if r.name == f"_mta-sts.{DOMAINS[0]}")


@pytest.mark.parametrize(("mta", "gateways", "expected"), [
    ({"mode": "enforce", "serve": "nginx;reboot"}, True, "mailstack:mtaSts.serve: 'nginx;reboot' is not one of gateway, external"),
    ({"mode": "enforce", "serve": "gateway"}, False,
     "mailstack:mtaSts.serve: gateway needs mailstack:gateways (they serve the policy with nginx); without gateways use external and serve it elsewhere"),
])
def test_serve_is_validated(mta: dict[str, str], gateways: bool, expected: str) -> None:
    raw: dict[str, object] = {
        "domain": "example.com", "odoo": {"hosting": "onpremise", "url": "https://odoo.example.com", "database": "db"},
        "outbound": ["gateway"] if gateways else [{"spf": "ip4:192.0.2.1"}],
        "inbound": {"mode": "gateway"} if gateways else {"mode": "forward", "mx": [{"host": "mx.example.org"}]},
        "mtaSts": mta,
    }
    if gateways:
        raw["gateways"] = [{"hostname": "mx1.example.com", "ipv4": "192.0.2.10"}]
    with pytest.raises(ConfigErrors) as excinfo:
        from_config(raw)
    assert [str(e) for e in excinfo.value.errors] == [expected]


def test_serve_defaults_to_the_gateways_when_there_are_some() -> None:
    assert stack_plan().stack.mta_sts.serve == "gateway"  # type: ignore[union-attr]
    external = from_config({
        "domain": "example.com", "odoo": {"hosting": "onpremise", "url": "https://odoo.example.com", "database": "db"},
        "outbound": [{"spf": "ip4:192.0.2.1"}], "inbound": {"mode": "forward", "mx": [{"host": "mx.example.org"}]}, "mtaSts": True,
    })
    assert external.mta_sts is not None and external.mta_sts.serve == "external"


def test_the_policy_host_is_planned_as_a_cname_to_the_primary_gateway_when_the_gateways_serve_it() -> None:
    served_by_gateways = stack_plan()
    cnames = {(r.name, r.content) for r in served_by_gateways.records if r.type == "CNAME" and r.name.startswith("mta-sts.")}
    assert cnames == {(mta_sts.policy_host(d), f"mx1.{DOMAINS[0]}") for d in DOMAINS}  # mx1: priority 10, before mx2's 20
    elsewhere = planning.build(dataclasses.replace(
        served_by_gateways.stack, mta_sts=dataclasses.replace(served_by_gateways.stack.mta_sts, serve="external")))  # type: ignore[arg-type]
    assert not [r for r in elsewhere.records if r.name.startswith("mta-sts.")]  # another web server: the name is the user's
