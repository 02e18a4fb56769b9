"""Which zones the lab's BIND serves, and what each holds before the plan is published.

* The stack's managed zones are dynamic and start with only what the stack does not
  own but a real zone would hold: the A/AAAA of hosts named inside it (Odoo's host,
  ``mta-sts.<domain>``, a gateway the plan does not publish). The plan's records are
  then published into them by RFC 2136, as in production.
* Static zones: the lab's own (``lab.test``), the receiver's (``recipient.test`` with its
  IPv6-only ``v6.`` subdomain), every third party the stack relies on
  (``mailstack.lab.thirdparty``), and the parent of any other host name the lab needs
  (its Organizational Domain, e.g. ``office365.com`` for ``smtp.office365.com``).
* The lab's DNS blocklist ``dnsbl.lab.test`` (RFC 5782 §5 test entry only), which the
  lab's stacks ask instead of the public lists.
* The top-level domain of each of those zones, empty (the DMARC tree walk asks
  ``_dmarc.<tld>``, RFC 9989 §4.10; the Internet answers NXDOMAIN, so must the lab).
* Reverse zones (/24 for IPv4, /64 for IPv6) with one PTR per address: every lab host
  name has A (or AAAA) and PTR, so FCrDNS holds and Postfix never warns.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass

from mailstack.core import names
from mailstack.core.record import Record
from mailstack.lab.topology import (
    LAB_BLOCKLIST,
    LAB_ZONE,
    NAMESERVER,
    RECEIVER,
    RECEIVER6,
    RECIPIENT6_DOMAIN,
    RECIPIENT_DOMAIN,
    RESERVED_ZONES,
    Topology,
    reverse_zone,
)
from mailstack.plan import Plan
from mailstack.rules import dmarc

TTL = 300


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """The zones of one lab: dynamic ones with their initial records, static ones, reverse ones."""

    dynamic: dict[str, list[Record]]
    static: dict[str, list[Record]]
    reverse: dict[str, list[Record]]


def recipient_records(topology: Topology) -> list[Record]:
    """The receiver's domains: MX, SPF for the outside sender (its IPv4 address), DMARC
    p=reject (a From there that does not align fails)."""
    receiver, receiver6 = topology.receiver, topology.receiver6
    assert receiver.ipv4 and receiver6.ipv6
    return [
        Record(RECIPIENT_DOMAIN, "MX", RECEIVER, TTL, 10),
        Record(RECIPIENT_DOMAIN, "TXT", f"v=spf1 ip4:{receiver.ipv4} ip6:{receiver6.ipv6} -all", TTL),
        Record(f"_dmarc.{RECIPIENT_DOMAIN}", "TXT", "v=DMARC1; p=reject", TTL),
        Record(RECIPIENT6_DOMAIN, "MX", RECEIVER6, TTL, 10),
    ]


def host_records(topology: Topology) -> list[Record]:
    """A and AAAA of every lab host."""
    found = []
    for host in topology.hosts:
        if host.ipv4:
            found.append(Record(host.name, "A", host.ipv4, TTL))
        if host.ipv6:
            found.append(Record(host.name, "AAAA", host.ipv6, TTL))
    return found


def _zone_for(name: str, zones: list[str]) -> str | None:
    inside = [z for z in zones if names.within(name, z)]
    return max(inside, key=len) if inside else None


def build(plan: Plan, topology: Topology, third_party: list[Record]) -> ZoneSet:
    """Every zone of the lab for a plan (made from the translated stack)."""
    managed = list(plan.managed_zones)
    planned = {(r.name, r.type) for r in plan.records}
    dynamic: dict[str, list[Record]] = {zone: [] for zone in managed}
    static: dict[str, list[Record]] = defaultdict(list)
    for zone in (LAB_ZONE, RECIPIENT_DOMAIN):
        static[zone] = []
    candidates = [*host_records(topology), *recipient_records(topology), *third_party]
    for record in candidates:
        if (record.name, record.type) in planned:
            continue  # the plan publishes it (a gateway's A record in a managed zone)
        managed_zone = _zone_for(record.name, managed)
        if managed_zone is not None:
            dynamic[managed_zone].append(record)
            continue
        zone = _zone_for(record.name, [*static, *RESERVED_ZONES]) or dmarc.organizational_domain(record.name)
        static[zone].append(record)
    # The lab's DNS blocklist: only the RFC 5782 §5 test entry (127.0.0.2) is listed.
    static[LAB_BLOCKLIST] = [
        Record(f"2.0.0.127.{LAB_BLOCKLIST}", "A", "127.0.0.2", TTL),
        Record(f"2.0.0.127.{LAB_BLOCKLIST}", "TXT", "RFC 5782 test entry", TTL),
    ]
    # The top-level domain of every zone, empty, as the Internet's answer NXDOMAIN for
    # what nobody publishes there: the DMARC tree walk (RFC 9989 §4.10) asks _dmarc.<tld>.
    served = [*dynamic, *static]
    for tld in sorted({zone.rsplit(".", 1)[-1] for zone in served} - set(served)):
        # BIND loads a zone whose NS (the lab's ns1.lab.test) lies inside it only with
        # that name's address in the zone itself.
        static[tld] = [Record(NAMESERVER, "A", topology.bind_address, TTL)] if names.within(NAMESERVER, tld) else []
    reverse: dict[str, list[Record]] = defaultdict(list)
    for address, host in sorted(topology.pointers().items()):
        reverse[reverse_zone(address)].append(Record(ipaddress.ip_address(address).reverse_pointer, "PTR", host, TTL))
    return ZoneSet(dynamic, dict(static), dict(reverse))
