"""DNSSEC checks against zones a real BIND signs (tests/dnssec_zones.py): a good chain,
a tampered signature, expired signatures, an unsigned delegation, a server that does
not answer — and BIND's own validator (delv) as the independent second opinion."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.message
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest

from mailstack.checks.dns import dnssec, dnssec_proofs
from mailstack.checks.dns.resolver import Resolver, Server
from mailstack.checks.engine import registry, runner
from mailstack.checks.engine.context import CheckContext, DnssecOptions
from mailstack.checks.engine.finding import Finding, Status
from mailstack.checks.groups import dnssec as dnssec_checks
from tests import dnssec_zones
from tests.servers import require_binary, require_root


def run_async(coroutine: Any) -> Any:
    """Run ``coroutine`` on a loop of its own. Not ``asyncio.run``: that leaves the main
    thread with no current event loop, and the Pulumi runtime of later tests (mocks,
    policy packs) asks for one, as ``pulumi up``'s host always provides it."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


@pytest.fixture(scope="module")

def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dnssec_zones.SignedLab]:
    require_root()
    for program in ("named", "dnssec-keygen", "dnssec-signzone", "delv"):
        require_binary(program)
    yield from dnssec_zones.start(tmp_path_factory.mktemp("dnssec-bind"), {}, {})


def run(lab: dnssec_zones.SignedLab, domain: str, anchors: dnssec.Anchors | None = None, resolver: Resolver | None = None) -> list[Finding]:
    registry.load_builtin()
    ctx = CheckContext(domain, resolver or lab.resolver(), dnssec=DnssecOptions(lab.anchors if anchors is None else anchors))
    return runner.run(ctx, registry.select(["dnssec"]), deadline=60)


def by_id(findings: list[Finding], id: str) -> list[Finding]:
    found = [f for f in findings if f.id == id]
    assert found, [f.id for f in findings]
    return found


def delv(lab: dnssec_zones.SignedLab, tmp: Path, name: str, rdtype: str) -> str:
    """BIND's validator on the same question, anchored at the same DS."""
    anchor = tmp / "anchor.conf"
    rows = [line.split() for line in lab.anchor_text.splitlines() if line.strip()]
    anchor.write_text("trust-anchors {\n" + "".join(f'  "{r[0]}" static-ds {r[3]} {r[4]} {r[5]} "{"".join(r[6:])}";\n' for r in rows) + "};\n")
    result = subprocess.run(["delv", "-a", str(anchor), "-p", str(lab.port), f"@{dnssec_zones.ADDRESS}", "+root=" + dnssec_zones.PARENT, name, rdtype],
                            capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


def validate(lab: dnssec_zones.SignedLab, name: str, rdtype: str) -> dnssec.Outcome:
    """The validator alone, on the fixture's server and anchor."""
    async def go() -> dnssec.Outcome:
        return await dnssec.validate(lab.resolver().aio, lab.anchors, name, rdtype)
    return run_async(go())


def zone_keys(lab: dnssec_zones.SignedLab, zone: str) -> tuple[dns.name.Name, dns.rdataset.Rdataset]:
    """A zone's DNSKEY RRset as BIND serves it (the proofs are judged with it)."""
    origin = dns.name.from_text(zone)
    keys = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    keys.update(run_async(lab.resolver().aio.message(zone, "DNSKEY")).find_rrset(dns.message.ANSWER, origin, dns.rdataclass.IN, dns.rdatatype.DNSKEY))
    return origin, keys


def answer(lab: dnssec_zones.SignedLab, name: str, rdtype: str, drop: Callable[[dns.rrset.RRset], bool] = lambda r: False) -> dns.message.Message:
    """BIND's real response, with the authority RRsets (and their RRSIGs) ``drop`` picks removed."""
    response = dns.message.from_text(run_async(lab.resolver().aio.message(name, rdtype)).to_text())
    gone = {(r.name, r.rdtype) for r in response.authority if r.rdtype != dns.rdatatype.RRSIG and drop(r)}
    response.authority = [r for r in response.authority if (r.name, r.covers if r.rdtype == dns.rdatatype.RRSIG else r.rdtype) not in gone]
    return response


def test_a_signed_zone_passes_and_bind_agrees(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    findings = run(signed, "good.dnssec.test")
    assert {f.status for f in by_id(findings, "dnssec.signed")} == {Status.PASS}, findings
    valid = by_id(findings, "dnssec.valid")
    assert {f.status for f in valid} == {Status.PASS}, valid
    assert len(valid) == 3  # MX, SPF TXT, DMARC TXT
    assert "; fully validated" in delv(signed, tmp_path, "good.dnssec.test", "MX")


def test_a_tampered_signature_fails_and_bind_agrees(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    findings = run(signed, "bad.dnssec.test")
    # the MX RRset was not touched: signatures are per RRset
    assert {f.status for f in by_id(findings, "dnssec.signed")} == {Status.PASS}
    txt = [f for f in by_id(findings, "dnssec.valid") if f.summary.startswith("bad.dnssec.test TXT")]
    assert [f.status for f in txt] == [Status.FAIL], txt
    assert "verify failure" in txt[0].summary
    assert "fully validated" not in delv(signed, tmp_path, "bad.dnssec.test", "TXT")


def test_expired_signatures_fail_and_bind_agrees(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    findings = run(signed, "expired.dnssec.test")
    found = by_id(findings, "dnssec.signed")
    assert [f.status for f in found] == [Status.FAIL], found
    assert "expired (expired 2024-02-01" in found[0].summary
    assert "expired" in delv(signed, tmp_path, "expired.dnssec.test", "MX").lower()


def test_an_unsigned_delegation_warns(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    findings = run(signed, "unsigned.dnssec.test")
    found = by_id(findings, "dnssec.signed")
    assert [f.status for f in found] == [Status.WARN], found
    assert "no DS" in found[0].summary
    assert {f.status for f in by_id(findings, "dnssec.valid")} == {Status.SKIP}
    assert "unsigned answer" in delv(signed, tmp_path, "unsigned.dnssec.test", "MX")


def test_a_wrong_anchor_fails_and_an_anchor_by_dnskey_passes(signed: dnssec_zones.SignedLab) -> None:
    stray = dnssec.parse_anchors("dnssec.test. IN DS 12345 13 2 " + "AB" * 32)
    assert {f.status for f in by_id(run(signed, "good.dnssec.test", stray), "dnssec.signed")} == {Status.FAIL}
    keys = dnssec_zones.signing.dnskey_lines(signed.bind.workdir / "keys", dnssec_zones.PARENT)
    by_key = dnssec.parse_anchors("\n".join(keys))
    assert by_key[dns.name.from_text(dnssec_zones.PARENT)].dnskey
    assert {f.status for f in by_id(run(signed, "good.dnssec.test", by_key), "dnssec.signed")} == {Status.PASS}


def test_a_validation_that_cannot_complete_is_an_error_not_a_verdict(signed: dnssec_zones.SignedLab) -> None:
    # the root anchor, but the server holds no root zone: REFUSED for ". DNSKEY"
    root = dnssec.load_anchors()
    findings = run(signed, "good.dnssec.test", root)
    assert {f.status for f in findings} == {Status.ERROR}, findings
    dead = Resolver((Server(dnssec_zones.ADDRESS, 9),), 0.5).cached()  # nothing listens
    findings = run(signed, "good.dnssec.test", resolver=dead)
    assert {f.status for f in findings} == {Status.ERROR}, findings


def test_bad_trust_anchor_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "anchor"
    for text, words in (("example. IN A 192.0.2.1\n", "not a DS or DNSKEY"), ("garbage\n", "zone-file syntax"), ("", "no DS or DNSKEY")):
        bad.write_text(text)
        with pytest.raises(dnssec.AnchorError, match=words):
            dnssec.load_anchors(bad)
    with pytest.raises(dnssec.AnchorError, match="does not exist"):
        dnssec.load_anchors(tmp_path / "missing")


def test_check_refuses_a_bad_trust_anchor_file_before_any_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailstack.cli import main as cli

    bad = tmp_path / "anchor"
    bad.write_text("example. IN A 192.0.2.1\n")
    # a nameserver nothing listens on: a query would cost a timeout, exit 2 comes at once
    code = cli.main(["check", "--domain", "example.net", "--trust-anchor", str(bad), "--nameserver", "127.0.152.9:9", "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and "not a DS or DNSKEY record" in err


def test_a_cname_into_a_signed_zone_validates_both_links_and_bind_agrees(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    name = "selector1._domainkey.alias.dnssec.test"
    out = validate(signed, name, "TXT")
    assert out.status is dnssec.Status.SECURE, out.reason
    assert "selector1._domainkey.alias.dnssec.test. CNAME selector1._domainkey.provider.dnssec.test. ok (signed by alias.dnssec.test.)" in out.reason
    assert "provider.dnssec.test. DS ok" in out.reason and out.zone == "provider.dnssec.test"
    assert [r.to_text() for r in out.records] == ['"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="']
    assert "; fully validated" in delv(signed, tmp_path, name, "TXT")


def test_a_cname_into_an_unsigned_zone_is_insecure_and_bind_agrees(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    name = "tounsigned._domainkey.alias.dnssec.test"
    out = validate(signed, name, "TXT")
    assert out.status is dnssec.Status.INSECURE, out.reason
    assert out.zone == "unsigned.dnssec.test" and "proves there is no DS" in out.reason
    assert "unsigned answer" in delv(signed, tmp_path, name, "TXT")


def test_a_cname_into_a_bogus_zone_is_bogus_and_bind_agrees(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    name = "tobad._domainkey.alias.dnssec.test"
    out = validate(signed, name, "TXT")
    assert out.status is dnssec.Status.BOGUS, out.reason
    assert "bad.dnssec.test. TXT" in out.reason and "verify failure" in out.reason
    assert "RRSIG failed to verify" in delv(signed, tmp_path, name, "TXT")


def test_a_cname_to_a_missing_name_needs_the_target_zones_denial(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    name = "gone._domainkey.alias.dnssec.test"
    out = validate(signed, name, "TXT")
    assert out.status is dnssec.Status.SECURE and out.records == (), out.reason
    assert "NXDOMAIN proven at gone._domainkey.provider.dnssec.test.: NSEC" in out.reason
    said = delv(signed, tmp_path, name, "TXT")
    assert "fully validated" in said and "ncache nxdomain" in said


def test_a_dname_validates_and_its_synthesized_cname_must_match(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    name = "selector1._domainkey.mail.alias.dnssec.test"
    out = validate(signed, name, "TXT")
    assert out.status is dnssec.Status.SECURE, out.reason
    assert "mail.alias.dnssec.test. DNAME provider.dnssec.test. ok" in out.reason
    assert "; fully validated" in delv(signed, tmp_path, name, "TXT")
    # BIND's real answer with the synthesized (unsigned) CNAME pointed elsewhere
    response = run_async(signed.resolver().aio.message(name, "TXT"))
    forged = dns.message.from_text(response.to_text().replace("IN CNAME selector1._domainkey.provider.dnssec.test.", "IN CNAME evil.example."))
    zone, keys = zone_keys(signed, "alias.dnssec.test")
    assert dnssec.validated_alias(response, dns.name.from_text(name), zone, keys, dnssec.Outcome(name, "TXT")) == dns.name.from_text("selector1._domainkey.provider.dnssec.test")
    with pytest.raises(dnssec.Bogus, match="not what the DNAME mail.alias.dnssec.test. -> provider.dnssec.test. synthesizes"):
        dnssec.validated_alias(forged, dns.name.from_text(name), zone, keys, dnssec.Outcome(name, "TXT"))


def test_alias_loops_and_overlong_chains_are_indeterminate(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    loop = validate(signed, "loop1.alias.dnssec.test", "TXT")
    assert loop.status is dnssec.Status.INDETERMINATE, loop.reason  # BIND itself answers SERVFAIL
    assert "resolution failed" in delv(signed, tmp_path, "loop1.alias.dnssec.test", "TXT")
    eight = validate(signed, "chain1.alias.dnssec.test", "TXT")
    assert eight.status is dnssec.Status.SECURE and eight.reason.count(" -> ") >= 8, eight.reason
    nine = validate(signed, "chain0.alias.dnssec.test", "TXT")
    assert nine.status is dnssec.Status.INDETERMINATE and f"longer than {dnssec.MAX_CHAIN}" in nine.reason, nine.reason


def test_nsec3_iterations_above_the_cap_are_insecure_where_bind_918_still_validates(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    # iter.dnssec.test: 100 iterations (dnssec-signzone 9.18 refuses more than 150)
    assert dnssec_proofs.NSEC3_MAX_ITERATIONS < 100 <= 150
    for name, rdtype in (("nothere.iter.dnssec.test", "TXT"), ("iter.dnssec.test", "A")):
        out = validate(signed, name, rdtype)
        assert out.status is dnssec.Status.INSECURE, out.reason
        assert "NSEC3 with 100 iterations, above the cap of 50 (RFC 9276 §3.2)" in out.reason
        assert "iterations 100, salt AABBCCDD: RFC 9276 §3.1" in out.notes[0]
        # BIND 9.18's cap is 150: it validates the same proof (9.20 caps at 50, as we do)
        assert "negative response, fully validated" in delv(signed, tmp_path, name, rdtype)
    # the same proof at 0 iterations (nsec3.dnssec.test) validates, with no note
    plain = validate(signed, "nothere.nsec3.dnssec.test", "TXT")
    assert plain.status is dnssec.Status.SECURE and "NSEC3 closest encloser" in plain.reason and plain.notes == [], plain
    assert "negative response, fully validated" in delv(signed, tmp_path, "nothere.nsec3.dnssec.test", "TXT")


def test_nsec3_iterations_or_salt_under_the_cap_validate_with_a_note(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    out = validate(signed, "nothere.salted.dnssec.test", "TXT")
    assert out.status is dnssec.Status.SECURE, out.reason
    assert out.notes == ["salted.dnssec.test. signs with NSEC3 iterations 5, salt AABBCCDD: RFC 9276 §3.1 says 0 iterations and no salt "
                         "(BIND: nsec3param iterations 0 optout no salt-length 0)"]
    assert "negative response, fully validated" in delv(signed, tmp_path, "nothere.salted.dnssec.test", "TXT")
    finding = dnssec_checks.verdict("dnssec.valid", out, "nothere.salted.dnssec.test TXT")
    assert finding.status is Status.PASS and "RFC 9276 §3.1" in finding.detail


def test_a_ds_of_an_unsupported_algorithm_or_digest_is_insecure_and_bind_agrees(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    for label, words in (("unknown-digest", "digest type 99 is not supported"), ("unknown-alg", "algorithm PRIVATEDNS (253) is not supported")):
        out = validate(signed, f"{label}.dnssec.test", "MX")
        assert out.status is dnssec.Status.INSECURE, out.reason
        assert words in out.reason and "RFC 4035 §5.2" in out.reason and words in out.notes[0]
        assert out.records, "the data is still read (unsigned)"
        assert "unsigned answer" in delv(signed, tmp_path, f"{label}.dnssec.test", "MX")
        found = by_id(run(signed, f"{label}.dnssec.test"), "dnssec.signed")
        assert [f.status for f in found] == [Status.WARN] and words in found[0].detail, found
    # a DS of a supported algorithm and digest that matches no key is bogus
    out = validate(signed, "wrong-digest.dnssec.test", "MX")
    assert out.status is dnssec.Status.BOGUS, out.reason
    assert "insecurity proof failed" in delv(signed, tmp_path, "wrong-digest.dnssec.test", "MX")


@pytest.mark.parametrize("zone", ["wild.dnssec.test", "nsec3.dnssec.test"])
def test_a_wildcard_answer_needs_its_no_closer_match_proof(signed: dnssec_zones.SignedLab, tmp_path: Path, zone: str) -> None:
    name = f"x.wc.{zone}"
    out = validate(signed, name, "TXT")
    assert out.status is dnssec.Status.SECURE, out.reason
    assert f"expanded from *.wc.{zone}." in out.reason and f"{name}." in out.reason
    assert "; fully validated" in delv(signed, tmp_path, name, "TXT")
    # BIND's real answer, proof and all, then the same answer without its NSEC/NSEC3
    origin, keys = zone_keys(signed, zone)
    qname = dns.name.from_text(name)
    full = answer(signed, name, "TXT")
    txt = full.find_rrset(dns.message.ANSWER, qname, dns.rdataclass.IN, dns.rdatatype.TXT)
    sig = full.find_rrset(dns.message.ANSWER, qname, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.TXT)
    assert sig[0].labels == 4 < len(qname) - 1 == 5  # the labels field gives the expansion away
    assert dnssec_proofs.verify(txt, sig, keys, origin)
    assert "expanded from" in dnssec_proofs.prove_expansion(full, qname, sig[0].labels, origin, keys)
    stripped = answer(signed, name, "TXT", drop=lambda r: r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3))
    with pytest.raises(dnssec.Bogus, match=f"expanded from \\*.wc.{zone}., but no signed NSEC/NSEC3 proves {name}. does not exist"):
        dnssec_proofs.prove_expansion(stripped, qname, sig[0].labels, origin, keys)
    # wildcard NODATA: the name is covered, the wildcard has no MX
    nodata = validate(signed, name, "MX")
    assert nodata.status is dnssec.Status.SECURE and f"the wildcard *.wc.{zone}. has types: TXT RRSIG" in nodata.reason, nodata.reason
    assert "negative response, fully validated" in delv(signed, tmp_path, name, "MX")
    wildcard = dns.name.from_text(f"*.wc.{zone}")
    params = answer(signed, zone, "NSEC3PARAM").answer[0][0] if zone.startswith("nsec3") else None
    hashed = dns.dnssec.nsec3_hash(wildcard, params.salt, params.iterations, params.algorithm) if params else None
    without = answer(signed, name, "MX", drop=lambda r: r.name == wildcard or r.name.labels[0].decode().upper() == hashed)
    with pytest.raises(dnssec.Bogus):
        dnssec_proofs.prove_nodata(without, qname, dns.rdatatype.MX, origin, keys)


def test_a_ds_denial_in_an_opt_out_span_needs_the_closest_encloser_proof(signed: dnssec_zones.SignedLab, tmp_path: Path) -> None:
    name = "child.optout.dnssec.test"
    out = validate(signed, name, "MX")
    assert out.status is dnssec.Status.INSECURE, out.reason
    assert "NSEC3 closest encloser optout.dnssec.test., next closer child.optout.dnssec.test. in the opt-out span" in out.reason
    assert "unsigned answer" in delv(signed, tmp_path, name, "MX")
    origin, keys = zone_keys(signed, "optout.dnssec.test")
    qname = dns.name.from_text(name)
    params = answer(signed, "optout.dnssec.test", "NSEC3PARAM").answer[0][0]
    apex = dns.dnssec.nsec3_hash(origin, params.salt, params.iterations, params.algorithm)
    full = answer(signed, name, "DS")
    assert "opt-out span" in dnssec_proofs.prove_nodata(full, qname, dns.rdatatype.DS, origin, keys)
    # BIND's real answer without the NSEC3 that matches the closest encloser (the apex)
    stripped = answer(signed, name, "DS", drop=lambda r: r.rdtype == dns.rdatatype.NSEC3 and r.name.labels[0].decode().upper() == apex)
    assert len(stripped.authority) < len(full.authority)
    with pytest.raises(dnssec.Bogus, match="no NSEC3 matches a closest encloser"):
        dnssec_proofs.prove_nodata(stripped, qname, dns.rdatatype.DS, origin, keys)
