"""DANE and TLS checks against real Postfix instances running the rendered gateway
configuration, certificates from a lab CA, and TLSA records in zones a real BIND signs
(tests/dnssec_zones.py):

- 127.0.152.25  mx.good.dnssec.test: the rendered gateway as is (TLS >= 1.2), a 90-day
                certificate; its TLSA is the plan's record (gateway.tls.dane.digest)
                in the signed zone good, and the same TLSA in the unsigned zone
- 127.0.152.26  mx.mismatch.dnssec.test: the same rendering with smtpd_tls_protocols
                lowered to >=TLSv1 and a 10-day certificate; its TLSA names another key

- 127.0.152.27  DANE-TA: a certificate naming mx.taroot/mx.tainter/mx.taother issued
                by a lab intermediate, presented with the intermediate and the lab
                root; TLSA ``2 0 1 <root>`` (taroot), ``2 1 1 <intermediate>`` (tainter),
                ``2 0 1 <another CA>`` (taother), ``2 0 1 <root>`` on mx.taname (a
                name the certificate lacks)
- 127.0.152.28  DANE-TA without the anchor sent: leaf and intermediate only (mx.tafull,
                mx.tabare); ``2 0 0 <root certificate>`` (tafull) and ``2 0 1 <root>``
                (tabare)
- mx.cnameunsigned / mx.cnamesigned: MX hosts in signed zones that are CNAMEs to
  mx.unsigned (an unsigned zone) and mx.good (signed), each with a TLSA of its own

``openssl s_client`` is the second opinion on the protocol versions and on every
DANE verdict (its own DANE verifier, ``-dane_tlsa_rrdata``).
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

from cryptography import x509

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

GOOD, WEAK, TA, BARE = "127.0.152.25", "127.0.152.26", "127.0.152.27", "127.0.152.28"
#: DANE-TA zones: label -> (gateway address, record kind); True: the check must pass.
TA_ZONES = {"taroot": (TA, "root 2 0 1", True), "tainter": (TA, "intermediate 2 1 1", True),
            "taother": (TA, "other CA 2 0 1", False), "taname": (TA, "root 2 0 1", False),
            "tafull": (BARE, "root 2 0 0", True), "tabare": (BARE, "root 2 0 1", False)}
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
    #: DANE-TA zone label -> its TLSA content
    ta_records: dict[str, str]

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
    root = Authority.create("mailstack lab root (i15g)", path_length=1)
    intermediate = root.subordinate("mailstack lab intermediate (i15g)")
    stranger = Authority.create("mailstack lab other CA (i15g)")
    ta_chain, ta_key = intermediate.issue(["mx.taroot.dnssec.test", "mx.tainter.dnssec.test", "mx.taother.dnssec.test"], days=90)
    bare_full, bare_key = intermediate.issue(["mx.tafull.dnssec.test", "mx.tabare.dnssec.test"], days=90)
    bare_chain = bare_full[:bare_full.index(root.cert_pem)]  # leaf and intermediate, no root
    assert ta_chain.count(b"BEGIN CERTIFICATE") == 3 and bare_chain.count(b"BEGIN CERTIFICATE") == 2

    def ta(authority: Authority, selector: int, mtype: int) -> str:
        return f"2 {selector} {mtype} {dane.association(x509.load_pem_x509_certificate(authority.cert_pem), selector, mtype)}"
    ta_records = {"taroot": ta(root, 0, 1), "tainter": ta(intermediate, 1, 1), "taother": ta(stranger, 0, 1),
                  "taname": ta(root, 0, 1), "tafull": ta(root, 0, 0), "tabare": ta(root, 0, 1)}
    more = {label: (True, dnssec_zones.mail_lines(f"{label}.dnssec.test", TA_ZONES[label][0], (ta_records[label],))) for label in TA_ZONES}
    for label, target in (("cnameunsigned", "mx.unsigned.dnssec.test."), ("cnamesigned", "mx.good.dnssec.test.")):
        more[label] = (True, [f"@ 300 IN MX 10 mx.{label}.dnssec.test.", f"mx 300 IN CNAME {target}",
                              f"_25._tcp.mx 300 IN TLSA {dane.content(digest)}"])
    # the good zone serves what the plan publishes (the next key's record beside it)
    planned = [r for r in plan.build(declaration("good.dnssec.test", GOOD, [digest, other])).records if r.type == "TLSA"]
    assert len(planned) == 2
    tlsa = {"good": tuple(r.content for r in planned), "unsigned": (dane.content(digest),),
            "mismatch": (dane.content(digest.replace(digest[0], "0" if digest[0] != "0" else "1", 1)),)}
    port = free_port(GOOD)
    instances: list[PostfixInstance] = []
    workdirs: list[Path] = []
    added = [a for a in (GOOD, WEAK, TA, BARE) if netns.add_address(a)]
    try:
        for zone, address, chain, key, overrides in (
            ("good.dnssec.test", GOOD, good_chain, good_key, {}),
            ("mismatch.dnssec.test", WEAK, weak_chain, weak_key, {"smtpd_tls_protocols": ">=TLSv1", "smtpd_tls_mandatory_protocols": ">=TLSv1"}),
            ("taroot.dnssec.test", TA, ta_chain, ta_key, {}),
            ("tafull.dnssec.test", BARE, bare_chain, bare_key, {}),
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
        for zones in dnssec_zones.start(base / "bind", {"good": GOOD, "unsigned": GOOD, "mismatch": WEAK}, tlsa, more):
            yield DaneLab(zones, port, ca_file, digest, ta_records)
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


def dane_verify(lab: DaneLab, address: str, host: str, rrdata: str) -> str:
    """OpenSSL's own DANE verifier on one TLSA record (no trust store: only the record)."""
    result = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"{address}:{lab.port}", "-servername", host,
                             "-dane_tlsa_domain", host, "-dane_tlsa_rrdata", rrdata, "-verify_return_error", "-brief",
                             "-no-CAfile", "-no-CApath", "-no-CAstore"],
                            input="", capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


def test_openssl_dane_agrees_on_the_match_and_the_mismatch(lab: DaneLab) -> None:
    """OpenSSL's own DANE verifier (s_client -dane_tlsa_rrdata) on the served records."""
    good = dane_verify(lab, GOOD, "mx.good.dnssec.test", dane.content(lab.digest))
    assert "Verification: OK" in good and "DANE TLSA 3 1 1" in good, good
    served = [r.to_text() for r in lab.zones.resolver().query("_25._tcp.mx.mismatch.dnssec.test", "TLSA").records]
    bad = dane_verify(lab, WEAK, "mx.mismatch.dnssec.test", served[0])
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


@pytest.mark.parametrize("label", sorted(TA_ZONES))
def test_dane_ta_is_judged_on_the_presented_chain_and_openssl_agrees(lab: DaneLab, label: str) -> None:
    """DANE-TA (RFC 7672 §3.1.2) on the chain pyOpenSSL hands over on this Python:
    the root's or the intermediate's record passes; another CA's, a leaf without the
    MX name, and a root digest the server does not send fail; ``2 0 0`` of an unsent
    root passes. OpenSSL's DANE verifier gives the same verdict on the served record."""
    address, kind, passes = TA_ZONES[label]
    host = f"mx.{label}.dnssec.test"
    found = of(lab.run(f"{label}.dnssec.test", groups=("dane",)), "dane.tlsa")
    served = [r.to_text() for r in lab.zones.resolver().query(f"_25._tcp.{host}", "TLSA").records]
    assert [t.replace(" ", "") for t in served] == [lab.ta_records[label].replace(" ", "")]  # BIND serves what we made
    assert [f.status for f in found] == [PASS if passes else FAIL], (kind, found)
    verdict = dane_verify(lab, address, host, lab.ta_records[label])
    assert ("Verification: OK" in verdict) is passes, (kind, verdict)
    if label == "taname":
        assert "does not name mx.taname.dnssec.test" in found[0].detail
    if label == "tabare":
        assert "no certificate of the presented chain matches" in found[0].detail


def test_the_probe_hands_over_the_whole_presented_chain(lab: DaneLab) -> None:
    from mailstack.checks.probes.tls import probe
    seen = probe("mx.taroot.dnssec.test", TA, SmtpOptions(port=lab.port, timeout=10, helo="checker.dnssec.test"), None)
    assert seen.error is None and len(seen.chain) == 3 and seen.leaf == seen.chain[0]
    subjects = [x509.load_der_x509_certificate(der).subject.rfc4514_string() for der in seen.chain]
    assert subjects == ["CN=mx.taroot.dnssec.test", "CN=mailstack lab intermediate (i15g)", "CN=mailstack lab root (i15g)"]


def test_tlsa_of_a_host_whose_address_records_are_unsigned_is_skipped(lab: DaneLab) -> None:
    """RFC 7672 §2.2.2 on real BIND: mx.cnameunsigned is a CNAME (in a signed zone, next
    to a TLSA that validates) to an address in an unsigned zone: senders do not use
    the TLSA, so dane.tlsa skips and dane.signed fails; the same alias into a signed
    zone (mx.cnamesigned -> mx.good) is used: both pass."""
    findings = lab.run("cnameunsigned.dnssec.test", groups=("dane",))
    tlsa, signed = of(findings, "dane.tlsa"), of(findings, "dane.signed")
    assert [f.status for f in tlsa] == [SKIP] and "address records of mx.cnameunsigned.dnssec.test are not signed" in tlsa[0].summary, tlsa
    assert "mx.unsigned.dnssec.test" in tlsa[0].summary
    assert [f.status for f in signed] == [FAIL] and "senders ignore the TLSA" in signed[0].summary, signed
    findings = lab.run("cnamesigned.dnssec.test", groups=("dane",))
    assert [f.status for f in of(findings, "dane.tlsa")] == [PASS], of(findings, "dane.tlsa")
    assert [f.status for f in of(findings, "dane.signed")] == [PASS], of(findings, "dane.signed")


def test_dane_ta_rule_checks_expiry_below_the_anchor_the_name_and_an_unsent_full_anchor() -> None:
    """``rules.dane.mismatch`` on chains made here (no server: the live tests above run
    the same rule on what Postfix presents): DANE-TA keeps PKIX's validity checks for
    the certificates below the anchor, DANE-EE ignores them (RFC 7672 §3.1.1, RFC 7671
    §5.2.2); a ``*`` names one left-most label only; ``2 0 0`` of an unsent anchor
    needs the chain to reach it."""
    root = Authority.create("rule root", path_length=1)
    intermediate = root.subordinate("rule intermediate")

    def chain(pem: bytes) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(pem)

    expired = chain(intermediate.issue(["mx.example.test"], days=-1)[0])
    root_cert = x509.load_pem_x509_certificate(root.cert_pem)
    by_root = (2, 0, 1, dane.association(root_cert, 0, 1))
    assert "outside its validity" in (dane.mismatch(expired, "mx.example.test", by_root) or "")
    leaf_ee = (3, 1, 1, dane.association(expired[0], 1, 1))
    assert dane.mismatch(expired, "mx.example.test", leaf_ee) is None  # DANE-EE: expiry ignored
    wildcard = chain(intermediate.issue(["*.example.test"], days=30)[0])
    assert dane.mismatch(wildcard, "mx.example.test", by_root) is None
    assert "does not name a.mx.example.test" in (dane.mismatch(wildcard, "a.mx.example.test", by_root) or "")
    full = (2, 0, 0, dane.association(root_cert, 0, 0))
    assert dane.mismatch(wildcard[:2], "mx.example.test", full) is None  # root not sent: the record is the anchor
    stranger = Authority.create("rule stranger")
    other_full = (2, 0, 0, dane.association(x509.load_pem_x509_certificate(stranger.cert_pem), 0, 0))
    assert "is not issued by 'rule stranger'" in (dane.mismatch(wildcard[:2], "mx.example.test", other_full) or "")
