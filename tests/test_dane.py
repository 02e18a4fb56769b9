"""DANE and TLS checks against real Postfix instances running the rendered gateway
configuration, certificates from a lab CA, and TLSA records in zones a real BIND signs
(tests/dnssec_zones.py):

- 127.0.152.25  mx.good.dnssec.test: the rendered gateway as is (TLS >= 1.2), a 90-day
                certificate; its TLSA is the plan's record (gateway.tls.dane.digest)
                in the signed zone good, and the same TLSA in the unsigned zone
- 127.0.152.26  mx.mismatch.dnssec.test: the same rendering with smtpd_tls_protocols
                lowered to >=TLSv1 and a 10-day certificate; its TLSA names another key

``openssl s_client`` is the second opinion on the protocol versions.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailstack import plan
from mailstack.checks.engine import registry, runner
from mailstack.checks.engine.context import CheckContext, DnssecOptions, SmtpOptions, TlsOptions
from mailstack.checks.engine.finding import Finding, Status
from mailstack.config.stack import from_config
from mailstack.core import zonefile
from mailstack.core.model import MailDomain
from mailstack.gateway import render
from mailstack.lab import netns
from mailstack.lab.postfix import PostfixInstance, lab_layout, make_workdir
from mailstack.lab.tls import Authority
from mailstack.rules import dane
from tests import dnssec_zones
from tests.ports import free_port
from tests.servers import require_binary, require_root

GOOD, WEAK = "127.0.152.25", "127.0.152.26"
PASS, WARN, FAIL, ERROR, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.SKIP


def declaration(zone: str, address: str, digests: list[str]) -> MailDomain:
    raw: dict[str, Any] = {
        "domain": zone,
        "odoo": {"hosting": "onpremise", "url": "http://127.0.152.30:8069", "database": "db"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway", "aliases": ["sales"]},
        "gateways": [{"hostname": f"mx.{zone}", "ipv4": address}],
        "gateway": {"odooAddresses": ["127.0.152.30/32"], "mailgate": {"login": "admin", "passwordFile": "/nonexistent/odoo-password"},
                    "tls": {"dane": {"digest": digests[0], **({"next": digests[1]} if len(digests) > 1 else {})}}},
        "dns": {"zone": "dnssec.test"},
    }
    return from_config(raw)


@dataclass
class DaneLab:
    zones: dnssec_zones.SignedLab
    port: int
    ca_file: Path
    digest: str

    def run(self, zone: str, groups: tuple[str, ...] = ("dane", "tls"), cafile: str | None = "lab", stack: MailDomain | None = None) -> list[Finding]:
        registry.load_builtin()
        ctx = CheckContext(
            zone, self.zones.resolver(), plan=plan.build(stack) if stack else None,
            smtp=SmtpOptions(port=self.port, timeout=10, helo="checker.dnssec.test"),
            dnssec=DnssecOptions(self.zones.anchors), tls=TlsOptions(str(self.ca_file) if cafile == "lab" else cafile),
        )
        return runner.run(ctx, registry.select(groups), deadline=60)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaneLab]:
    require_root()
    for program in ("named", "postfix", "openssl", "dnssec-signzone"):
        require_binary(program)
    base = tmp_path_factory.mktemp("dane")
    authority = Authority.create("mailstack lab CA (i15b)")
    ca_file = base / "ca.pem"
    ca_file.write_bytes(authority.cert_pem)
    good_chain, good_key = authority.issue(["mx.good.dnssec.test"], days=90)
    weak_chain, weak_key = authority.issue(["mx.mismatch.dnssec.test"], days=10)
    digest = dane.key_digest(good_chain)
    other = dane.key_digest(weak_chain)
    # the good zone serves what the plan publishes (the next key's record beside it)
    planned = [r for r in plan.build(declaration("good.dnssec.test", GOOD, [digest, other])).records if r.type == "TLSA"]
    assert len(planned) == 2
    tlsa = {"good": tuple(r.content for r in planned), "unsigned": (dane.content(digest),),
            "mismatch": (dane.content(digest.replace(digest[0], "0" if digest[0] != "0" else "1", 1)),)}
    port = free_port(GOOD)
    instances: list[PostfixInstance] = []
    workdirs: list[Path] = []
    added = [a for a in (GOOD, WEAK) if netns.add_address(a)]
    try:
        for zone, address, chain, key, overrides in (
            ("good.dnssec.test", GOOD, good_chain, good_key, {}),
            ("mismatch.dnssec.test", WEAK, weak_chain, weak_key, {"smtpd_tls_protocols": ">=TLSv1", "smtpd_tls_mandatory_protocols": ">=TLSv1"}),
        ):
            workdir = make_workdir("i15b-dane-")
            workdirs.append(workdir)
            (workdir / "cert.pem").write_bytes(chain)
            (workdir / "key.pem").write_bytes(key)
            (workdir / "key.pem").chmod(0o600)
            stack = declaration(zone, address, [digest])
            assert stack.gateway is not None
            settings = dataclasses.replace(stack.gateway, recipient_check="static",
                                           tls=dataclasses.replace(stack.gateway.tls, cert=str(workdir / "cert.pem"), key=str(workdir / "key.pem")))
            submission, milter = _other_ports(address, port)
            layout = lab_layout(workdir, address, smtp_port=port, submission_port=submission, milter_port=milter)
            files = render.render(plan.build(stack), settings, layout=layout)
            main_cf = next(f.text for p, f in files.items() if p.endswith("main.cf"))
            assert "smtpd_tls_protocols = >=TLSv1.2" in main_cf and "smtpd_tls_mandatory_protocols = >=TLSv1.2" in main_cf
            instance = PostfixInstance(workdir, files, overrides={"inet_interfaces": address, "smtpd_milters": "", "non_smtpd_milters": "",
                                                                  "smtpd_peername_lookup": "no", **overrides})
            instance.start()
            instances.append(instance)
        for zones in dnssec_zones.start(base / "bind", {"good": GOOD, "unsigned": GOOD, "mismatch": WEAK}, tlsa):
            yield DaneLab(zones, port, ca_file, digest)
    finally:
        for instance in instances:
            instance.stop()
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        for address in added:
            netns.remove_address(address)


def _other_ports(address: str, taken: int) -> tuple[int, int]:
    """Two free ports on ``address`` other than ``taken`` and each other (nothing is
    bound yet, so ``free_port`` alone could hand out the SMTP port again)."""
    chosen: list[int] = []
    while len(chosen) < 2:
        port = free_port(address)
        if port != taken and port not in chosen:
            chosen.append(port)
    return chosen[0], chosen[1]


def of(findings: list[Finding], id: str) -> list[Finding]:
    found = [f for f in findings if f.id == id]
    assert found, [f.id for f in findings]
    return found


def test_the_planned_tlsa_matches_the_gateway_and_every_tls_check_passes(lab: DaneLab) -> None:
    findings = lab.run("good.dnssec.test", stack=declaration("good.dnssec.test", GOOD, [lab.digest]))
    for id in ("dane.tlsa", "dane.signed", "tls.chain", "tls.expiry", "tls.versions"):
        assert {f.status for f in of(findings, id)} == {PASS}, of(findings, id)
    assert lab.digest in of(findings, "dane.tlsa")[0].summary
    assert "TLSv1: refused" in of(findings, "tls.versions")[0].detail


def test_a_mismatching_tlsa_an_expiring_certificate_and_tls_1_1_fail(lab: DaneLab) -> None:
    findings = lab.run("mismatch.dnssec.test")
    assert [f.status for f in of(findings, "dane.tlsa")] == [FAIL]
    assert "matches none" in of(findings, "dane.tlsa")[0].summary
    assert [f.status for f in of(findings, "tls.expiry")] == [WARN]
    versions = of(findings, "tls.versions")
    assert [f.status for f in versions] == [FAIL] and "TLSv1.1" in versions[0].summary
    assert [f.status for f in of(findings, "tls.chain")] == [PASS]  # its name and chain are fine


def test_openssl_agrees_on_the_protocol_versions(lab: DaneLab) -> None:
    def handshake(address: str) -> str:
        result = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0",
                                 "-connect", f"{address}:{lab.port}", "-servername", "mx.test"],
                                input="", capture_output=True, text=True, timeout=30)
        return result.stdout + result.stderr
    assert "alert protocol version" in handshake(GOOD)
    assert "Protocol  : TLSv1.1" in handshake(WEAK) or "Protocol: TLSv1.1" in handshake(WEAK)


def test_dane_on_an_unsigned_zone_fails_and_an_untrusted_chain_fails(lab: DaneLab) -> None:
    findings = lab.run("unsigned.dnssec.test")
    assert [f.status for f in of(findings, "dane.signed")] == [FAIL]
    assert [f.status for f in of(findings, "dane.tlsa")] == [SKIP]
    # the lab CA is not in the system store; and the MX name is not the certificate's
    chain = of(lab.run("good.dnssec.test", groups=("tls",), cafile=None), "tls.chain")
    assert [f.status for f in chain] == [FAIL] and "system trust store" in chain[0].summary
    assert [f.status for f in of(findings, "tls.chain")] == [FAIL]  # mx.unsigned... vs mx.good... certificate


def test_a_planned_tlsa_missing_from_dns_fails(lab: DaneLab) -> None:
    stack = declaration("mismatch.dnssec.test", WEAK, [lab.digest])
    found = of(lab.run("mismatch.dnssec.test", groups=("dane",), stack=stack), "dane.tlsa")
    assert [f.status for f in found] == [FAIL]  # published, but not the planned key


def test_the_plan_publishes_current_and_next_tlsa_and_refuses_a_bad_digest() -> None:
    digest, following = "ab" * 32, "cd" * 32
    records = [r for r in plan.build(declaration("good.dnssec.test", GOOD, [digest, following])).records if r.type == "TLSA"]
    assert [(r.name, r.content) for r in records] == [("_25._tcp.mx.good.dnssec.test", f"3 1 1 {digest}"), ("_25._tcp.mx.good.dnssec.test", f"3 1 1 {following}")]
    assert len({r.key for r in records}) == 2
    assert zonefile.line(records[0]).startswith("_25._tcp.mx.good.dnssec.test. 3600 IN TLSA 3 1 1 ")
    with pytest.raises(Exception, match=r"gateway\.tls\.dane\.digest.*64 hex digits"):
        declaration("good.dnssec.test", GOOD, ["xyz"])


def test_openssl_dane_agrees_on_the_match_and_the_mismatch(lab: DaneLab) -> None:
    """OpenSSL's own DANE verifier (s_client -dane_tlsa_rrdata) on the served records."""
    def dane_verify(address: str, host: str, rrdata: str) -> str:
        result = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"{address}:{lab.port}", "-servername", host,
                                 "-dane_tlsa_domain", host, "-dane_tlsa_rrdata", rrdata, "-verify_return_error", "-brief"],
                                input="", capture_output=True, text=True, timeout=30)
        return result.stdout + result.stderr
    good = dane_verify(GOOD, "mx.good.dnssec.test", dane.content(lab.digest))
    assert "Verification: OK" in good and "DANE TLSA 3 1 1" in good, good
    served = [r.to_text() for r in lab.zones.resolver().query("_25._tcp.mx.mismatch.dnssec.test", "TLSA").records]
    bad = dane_verify(WEAK, "mx.mismatch.dnssec.test", served[0])
    assert "Verification: OK" not in bad, bad


def test_a_gateway_with_its_own_key_gets_its_own_tlsa_and_every_gateway_needs_one() -> None:
    shared, own = "ab" * 32, "cd" * 32
    raw: dict[str, Any] = {
        "domain": "example.net",
        "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "db"},
        "outbound": ["gateway"], "inbound": {"mode": "gateway"},
        "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}, {"hostname": "mx2.example.net", "ipv4": "192.0.2.11"}],
        "gateway": {"mailgate": {"login": "admin"}, "tls": {"dane": {"digest": shared, "hosts": {"mx2.example.net": {"digest": own}}}}},
    }
    records = {(r.name, r.content) for r in plan.build(from_config(raw)).records if r.type == "TLSA"}
    assert records == {("_25._tcp.mx1.example.net", f"3 1 1 {shared}"), ("_25._tcp.mx2.example.net", f"3 1 1 {own}")}
    del raw["gateway"]["tls"]["dane"]["digest"]
    with pytest.raises(Exception, match=r"gateway\.tls\.dane\.digest: is required.*no digest for mx1\.example\.net"):
        from_config(raw)
    raw["gateway"]["tls"]["dane"] = {"hosts": {"mx9.example.net": {"digest": own}}}
    with pytest.raises(Exception, match=r"gateway\.tls\.dane\.hosts\.mx9\.example\.net: is not a gateway of this stack"):
        from_config(raw)
