"""SPF lookup counts cross-checked with an independent implementation (checkdmarc),
on the broken zones and the example stacks, through the same BIND.

checkdmarc stops at the first limit it meets and raises; its exception carries the
count it reached (``data``). Where it refuses to count (a loop, two records, a missing
include target) we compare the verdict instead; docs/checks.md explains each case.
"""

from __future__ import annotations

import checkdmarc.spf as cspf
import dns.resolver
import pytest

from mailstack.checks.engine.finding import Status
from mailstack.checks.dns import loop
from mailstack.checks.probes.spf_tree import budget, fetch_tree
from tests.checks_fixtures import context, dns_lab, of, run, statuses  # noqa: F401


def _checkdmarc(lab, domain: str) -> tuple[int | None, int | None, str]:  # type: ignore[no-untyped-def]
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab.bind.address]
    resolver.port = lab.port
    resolver.lifetime = 3
    try:
        result = cspf.get_spf_record(domain, resolver=resolver)
    except cspf.SPFTooManyDNSLookups as err:
        return err.data["dns_lookups"], None, type(err).__name__
    except cspf.SPFTooManyVoidDNSLookups as err:
        return None, err.data["void_dns_lookups"], type(err).__name__
    except cspf.SPFError as err:
        return None, None, type(err).__name__
    return result["dns_lookups"], result["void_dns_lookups"], "ok"


@pytest.mark.parametrize(
    "domain",
    ["lookups.broken.test", "ten.broken.test", "redirect.broken.test", "void.broken.test", "plusall.broken.test",
     "example.com", "example.net", "contoso.example", "shop.example.org", "group.example"],
)
def test_lookup_and_void_counts_agree_with_checkdmarc(dns_lab, domain: str) -> None:
    ours = budget(loop.run(fetch_tree(dns_lab.resolver().aio, domain)))
    lookups, voids, outcome = _checkdmarc(dns_lab, domain)
    if lookups is not None:
        assert ours.lookups == lookups, (domain, outcome)
    if voids is not None:
        assert ours.voids == voids, (domain, outcome)
    assert lookups is not None or voids is not None
    assert (outcome == "SPFTooManyDNSLookups") == ours.over_lookups
    assert (outcome == "SPFTooManyVoidDNSLookups") == ours.over_voids


@pytest.mark.parametrize(
    "domain, theirs, our_id",
    [
        ("loop.broken.test", "SPFIncludeLoop", "spf.loop"),
        ("two-spf.broken.test", "MultipleSPFRTXTRecords", "spf.single"),
        ("include-nx.broken.test", "SPFRecordNotFound", "spf.syntax"),
        ("spf-syntax.broken.test", "SPFSyntaxError", "spf.syntax"),
        # checkdmarc reports 11 MX records as 11 "lookups"; we count 1 lookup and fail the
        # per-mx limit of RFC 7208 §4.6.4 under the same id
        ("mx-limit.broken.test", "SPFTooManyDNSLookups", "spf.lookups"),
    ],
)
def test_where_checkdmarc_refuses_to_count_we_fail_the_matching_check(dns_lab, domain: str, theirs: str, our_id: str) -> None:
    assert _checkdmarc(dns_lab, domain)[2] == theirs
    findings = run(context(dns_lab, domain=domain), "spf")
    assert statuses(findings, our_id) == {Status.FAIL}
