"""Zones of the check-suite BIND for issue 15's reputation and current-standards checks.

- ``dmarcbis``: a one-label zone (a TLD of its own, so every tree walk ends inside it)
  for DMARCbis (RFC 9989): a PSD with ``psd=y``, organizational domains below it, the
  8-query walk limit, removed, unknown and test-mode tags; and SPF macros (RFC 7208 §7).
- ``dmarcnp``: a one-label zone for DMARCbis' ``np=`` (RFC 9989 §4.7): ``np=reject``
  below ``sp=none``, ``sp=none`` without np, ``p=`` alone, and a wildcard that makes
  every made-up subdomain exist (so ``sp=``, not ``np=``, applies to them).
- ``bl.test``: a DNS blocklist (RFC 5782) answering as Spamhaus does: listed with TXT
  reasons, not listed (NXDOMAIN), and the refusal codes 127.255.255.252/254/255.
- ``deadbl.test``: a list that lists 127.0.0.1, i.e. everything (RFC 5782 §5).
- the top-level domain of every other zone, empty: the DMARC tree walk asks
  ``_dmarc.<tld>``, which the Internet answers with NXDOMAIN.
"""

from __future__ import annotations

import ipaddress

#: Gateway addresses of the blocklist cases (this engineer's loopback range; nothing
#: listens on them: only their reversed names are looked up).
LISTED, CLEAN, REFUSED_PUBLIC, REFUSED_QUOTA = "127.0.151.10", "127.0.151.11", "127.0.151.254", "127.0.151.255"
LISTED6 = "2001:db8:151::10"
BLOCKLIST, DEAD_BLOCKLIST = "bl.test", "deadbl.test"
DMARCBIS = "dmarcbis"
NONEXISTENT = "dmarcnp"
DEEP = "x1.x2.x3.x4.x5.x6.x7.x8.deep.dmarcbis"  # 10 labels


def _reversed(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer.rsplit(".", 2)[0]


def dmarcbis() -> list[str]:
    return [
        # a public suffix domain (psd=y): its children are Organizational Domains
        '_dmarc.psd 300 IN TXT "v=DMARC1; p=reject; sp=quarantine; np=reject; psd=y"',
        # brand.psd: an Organizational Domain with its own policy, and a subdomain without
        '_dmarc.brand.psd 300 IN TXT "v=DMARC1; p=reject; sp=none; rua=mailto:dmarc@brand.psd.dmarcbis"',
        "shop.brand.psd 300 IN A 127.0.151.20",
        # other.psd publishes nothing: the PSD's policy applies (sp=), other.psd is its own org domain
        "other.psd 300 IN A 127.0.151.21",
        # a psd=n record stops the walk: that name is the Organizational Domain
        '_dmarc.org.psd 300 IN TXT "v=DMARC1; p=quarantine; psd=n; rua=mailto:d@org.psd.dmarcbis"',
        "news.org.psd 300 IN A 127.0.151.22",
        # records 9 and 8 labels deep are skipped by the walk of the 10-label DEEP (shortened
        # to 7 labels after the first query; a walk shortening to 8 would find the second)
        '_dmarc.x2.x3.x4.x5.x6.x7.x8.deep 300 IN TXT "v=DMARC1; p=reject"',
        '_dmarc.x3.x4.x5.x6.x7.x8.deep 300 IN TXT "v=DMARC1; p=quarantine"',
        '_dmarc.deep 300 IN TXT "v=DMARC1; p=none; rua=mailto:d@deep.dmarcbis"',
        "x1.x2.x3.x4.x5.x6.x7.x8.deep 300 IN A 127.0.151.23",  # names exist (checkdmarc asks)
        "a.b.other.psd 300 IN A 127.0.151.24",
        # removed (pct, rf, ri), unknown (foo) and test-mode tags
        '_dmarc.removed 300 IN TXT "v=DMARC1; p=reject; pct=50; rf=afrf; ri=3600"',
        '_dmarc.unknown 300 IN TXT "v=DMARC1; p=reject; foo=bar; rua=mailto:d@unknown.dmarcbis"',
        '_dmarc.testmode 300 IN TXT "v=DMARC1; p=reject; t=y; rua=mailto:d@testmode.dmarcbis"',
        '_dmarc.enforced 300 IN TXT "v=DMARC1; p=reject; np=reject; rua=mailto:d@enforced.dmarcbis"',
        # an undeclared domain whose MX host has a listed address (reputation.dnsbl in --domain mode)
        "rep-mx 300 IN MX 10 mx.rep-mx.dmarcbis.",
        f"mx.rep-mx 300 IN A {LISTED}",
        # SPF macros: valid ones (2 lookups: exists and include counted once each), an invalid one
        'spf-macro 300 IN TXT "v=spf1 exists:%{i}._spf.spf-macro.dmarcbis include:%{d2}._inc.spf-macro.dmarcbis -all"',
        # what pyspf's expansion of exists:%{i}._spf... asks for 127.0.151.30: it exists
        "127.0.151.30._spf.spf-macro 300 IN A 127.0.0.2",
        'spf-badmacro 300 IN TXT "v=spf1 exists:%{x}._spf.spf-badmacro.dmarcbis -all"',
        # an include that cannot be fetched (its zone is refused by this server): spf.loop is undecided
        'spf-unfetched 300 IN TXT "v=spf1 include:_spf.not-served.invalid -all"',
    ]


def dmarcnp() -> list[str]:
    return [
        '_dmarc.npreject 300 IN TXT "v=DMARC1; p=reject; sp=none; np=reject"',
        '_dmarc.spnone 300 IN TXT "v=DMARC1; p=reject; sp=none"',
        '_dmarc.ponly 300 IN TXT "v=DMARC1; p=quarantine"',
        '_dmarc.wild 300 IN TXT "v=DMARC1; p=reject; sp=none; np=reject"',
        "*.wild 300 IN A 127.0.151.25",
    ]


def blocklist() -> list[str]:
    return [
        # RFC 5782 §5 test entry: 127.0.0.2 listed, 127.0.0.1 not
        "2.0.0.127 300 IN A 127.0.0.2",
        '2.0.0.127 300 IN TXT "test entry"',
        f"{_reversed(LISTED)} 300 IN A 127.0.0.2",
        f"{_reversed(LISTED)} 300 IN A 127.0.0.4",
        f'{_reversed(LISTED)} 300 IN TXT "listed: lab spam source, see https://bl.test/lookup"',
        f"{_reversed(LISTED6)} 300 IN A 127.0.0.3",
        f'{_reversed(LISTED6)} 300 IN TXT "listed: lab IPv6 spam source"',
        f"{_reversed(REFUSED_PUBLIC)} 300 IN A 127.255.255.254",
        f"{_reversed(REFUSED_QUOTA)} 300 IN A 127.255.255.255",
    ]


def zones(served: list[str]) -> dict[str, list[str]]:
    """The zones to add to a BIND already serving ``served``."""
    found = {DMARCBIS: dmarcbis(), NONEXISTENT: dmarcnp(), BLOCKLIST: blocklist(), DEAD_BLOCKLIST: ["1.0.0.127 300 IN A 127.0.0.2"]}
    every = [*served, *found]
    for tld in sorted({zone.rsplit(".", 1)[-1] for zone in every} - set(every) - {"arpa", "invalid"}):
        found[tld] = []
    return found
