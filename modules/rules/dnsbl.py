"""DNS blocklists (DNSxL, RFC 5782), written once: where an address is looked up, what
an answer means, and the lists asked by default.

An address is listed when ``<reversed address>.<zone>`` has an A record in 127.0.0.0/8
(RFC 5782 §2.1: IPv4 octets reversed, §2.4: IPv6 as 32 reversed nibbles); the TXT
record at the same name says why (§2.1). Not every A answer is a listing: Spamhaus
answers 127.255.255.252/254/255 when it refuses to answer (typo in the list name,
query through a public or unattributable resolver, too many queries) — "not checked",
never "listed" or "not listed". An answer outside 127.0.0.0/8 is a resolver rewriting
NXDOMAIN, not the list. NXDOMAIN is "not listed". A list that lists 127.0.0.1 lists
everything (RFC 5782 §5: the address must never be listed): shut down or refusing us.

The lists asked by default are the two Postfix's postscreen documentation and most
receivers use for the sending IP (free for low-volume lookups, IPv4 and, Spamhaus,
IPv6): Spamhaus ZEN (SBL, CSS, XBL, PBL in one zone: a PBL listing alone means the
address should not send straight to MX hosts, which a gateway does) and SpamCop. Others
are a stack key away (``mailstack:checks.blocklists``). Spamhaus refuses queries that
reach it through big public resolvers (8.8.8.8, 1.1.1.1): the check then reports
``error``, with the reason, and the fix is a resolver of one's own (``--nameserver``).
This module does no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

#: Zones asked when ``mailstack:checks.blocklists`` is not given.
DEFAULT_ZONES = ("zen.spamhaus.org", "bl.spamcop.net")
#: Spamhaus' answers that mean "your query was not answered" (Spamhaus' DNSBL usage
#: documentation), not a listing.
REFUSAL_CODES = {
    "127.255.255.252": "the list name is mistyped",
    "127.255.255.254": "queried through a public or unattributable resolver",
    "127.255.255.255": "too many queries from this resolver",
}
#: RFC 5782 §5: never listed by a working list; a list that answers it lists everything.
NEVER_LISTED = "127.0.0.1"
LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


class Outcome(StrEnum):
    LISTED = "listed"
    NOT_LISTED = "not-listed"
    UNKNOWN = "unknown"  # the list refused to answer or answered something else


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str = ""


def query_name(address: str, zone: str) -> str:
    """The name to ask (RFC 5782 §2.1, §2.4): the address' reverse-DNS labels (octets
    or nibbles, reversed) under ``zone``. ValueError for a string that is not an address."""
    reverse = ipaddress.ip_address(address).reverse_pointer  # ...in-addr.arpa / ...ip6.arpa
    return f"{reverse.rsplit('.', 2)[0]}.{zone.rstrip('.').lower()}"


def classify(nxdomain: bool, codes: tuple[str, ...], texts: tuple[str, ...] = ()) -> Verdict:
    """What one lookup's answer means: NXDOMAIN (or no A record) is not listed; an A in
    127.0.0.0/8 other than a refusal code is listed (with the TXT reason); a refusal
    code or an address elsewhere is unknown, with why."""
    if nxdomain or not codes:
        return Verdict(Outcome.NOT_LISTED)
    refusals = [c for c in codes if c in REFUSAL_CODES]
    if refusals:
        return Verdict(Outcome.UNKNOWN, "; ".join(f"{c}: {REFUSAL_CODES[c]}" for c in refusals))
    outside = [c for c in codes if ipaddress.ip_address(c) not in LOOPBACK_NET]
    if outside:
        return Verdict(Outcome.UNKNOWN, f"answer {', '.join(outside)} is outside 127.0.0.0/8: a resolver rewriting NXDOMAIN, not the list")
    return Verdict(Outcome.LISTED, "; ".join(texts) or f"return code {', '.join(codes)}")
