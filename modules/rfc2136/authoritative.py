"""Ask every authoritative server of a zone directly what it serves for a DKIM
rotation's key records (``mailstack.rules.dkim_rotation.Observation``).

A resolver's answer says what one server served some time ago; the switch to a new
DKIM key must wait until *every* server a receiver's resolver may ask serves it. So
each server is asked itself, without recursion (RD clear), over UDP with a TCP retry
on truncation (a 2048-bit key's TXT is near 400 bytes). The servers are the
configured primary on an RFC 2136 stack (``dns.server``), or the zone's NS set (its
host names resolved to addresses) on Cloudflare. Lives beside the RFC 2136 wire code:
both speak DNS to authoritative servers with dnspython, and both the providers and the
checks use it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from mailstack.core import txt
from mailstack.core.errors import MailstackError
from mailstack.core.model import Dns, SenderKind
from mailstack.plan import Plan
from mailstack.rules import dkim, dkim_rotation
from mailstack.rules.dkim_rotation import Observation, RotationState, ServerView

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Authority:
    """One authoritative server: its name (as the NS set or the stack names it) and
    where it is asked."""

    name: str
    address: str
    port: int = 53

    @property
    def where(self) -> str:
        shown = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.name} ({shown}:{self.port})" if self.name != self.address else f"{shown}:{self.port}"


#: A resolver to ask for the NS set: (address, port).
Nameserver = tuple[str, int]


def of_zone(zone: str, nameservers: Sequence[Nameserver] = (), timeout: float = DEFAULT_TIMEOUT) -> list[Authority]:
    """The zone's NS set, each host resolved (A and AAAA) by the given resolvers or the
    system's. MailstackError when the zone has no NS answer: then nothing can be verified."""
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [address for address, _ in nameservers]
        resolver.nameserver_ports = {address: port for address, port in nameservers}
    resolver.lifetime = timeout
    try:
        hosts = sorted(str(r.target).rstrip(".").lower() for r in resolver.resolve(zone, "NS"))
    except dns.exception.DNSException as err:
        raise MailstackError(f"the NS set of {zone} cannot be read ({err.__class__.__name__}): no authoritative server to verify") from None
    found: list[Authority] = []
    for host in hosts:
        for rdtype in ("A", "AAAA"):
            try:
                found += [Authority(host, r.address) for r in resolver.resolve(host, rdtype)]
            except dns.exception.DNSException:
                continue
    if not found:
        raise MailstackError(f"no address of {zone}'s name servers ({', '.join(hosts)}) resolves")
    return found


def of_stack(dns_options: Dns, zone: str, nameservers: Sequence[Nameserver] = (), timeout: float = DEFAULT_TIMEOUT) -> list[Authority]:
    """The servers a rotation waits for: on an RFC 2136 stack the configured server
    (``dns.server``, the one mailstack updates and reads back), else the zone's NS set
    (Cloudflare's two name servers). Secondaries of an RFC 2136 primary are not asked:
    docs/gateway.md says to let them transfer before the switch."""
    if dns_options.provider == "rfc2136" and dns_options.server:
        return [Authority(dns_options.server, dns_options.server, dns_options.port)]
    return of_zone(zone, nameservers, timeout)


def _txt_values(server: Authority, name: str, timeout: float) -> list[str] | None:
    """The TXT values ``server`` serves at ``name`` ([] for NXDOMAIN/NODATA), None
    when it does not answer for it authoritatively."""
    query = dns.message.make_query(dns.name.from_text(name), dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD
    response, _ = dns.query.udp_with_fallback(query, server.address, timeout=timeout, port=server.port)
    if response.rcode() == dns.rcode.NXDOMAIN:
        return []
    if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
        return None
    values: list[str] = []
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            values += [txt.from_wire(rdata.strings) for rdata in rrset]
    return values


def _ttl(server: Authority, name: str, timeout: float) -> int:
    query = dns.message.make_query(dns.name.from_text(name), dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD
    response, _ = dns.query.udp_with_fallback(query, server.address, timeout=timeout, port=server.port)
    return max((rrset.ttl for rrset in response.answer if rrset.rdtype == dns.rdatatype.TXT), default=0)


def _view(server: Authority, new: dict[str, str | None], old: Sequence[str], timeout: float) -> ServerView:
    missing: list[str] = []
    published: list[str] = []
    old_ttl = 0
    try:
        for name, expected in new.items():
            values = _txt_values(server, name, timeout)
            if values is None:
                return ServerView(server.where, error=f"no authoritative answer for {name}")
            keys = [v for v in values if dkim.is_live_key(v)]
            wanted = dkim.public_key_base64(expected) if expected else None
            if not keys or (wanted and not any(dkim.parse(v).public_key == wanted for v in keys)):
                missing.append(name)
        for name in old:
            values = _txt_values(server, name, timeout)
            if values and any(dkim.is_live_key(v) for v in values):
                published.append(name)
                old_ttl = max(old_ttl, _ttl(server, name, timeout))
    except (dns.exception.DNSException, OSError) as err:
        return ServerView(server.where, error=f"{err.__class__.__name__}: {err}")
    return ServerView(server.where, tuple(missing), tuple(published), old_ttl)


def observe(
    servers: Sequence[Authority], new: dict[str, str | None], old: Sequence[str], timeout: float = DEFAULT_TIMEOUT,
) -> Observation:
    """Each server's view of the rotation: ``new`` maps each key record name of the new
    selector to the public key it must carry (PEM or base64; None: any usable key), and
    ``old`` names the previous selector's key records."""
    return Observation(tuple(_view(server, new, old, timeout) for server in servers))


def observe_plan(planned: Plan, nameservers: Sequence[Nameserver] = (), timeout: float = DEFAULT_TIMEOUT) -> Observation | None:
    """What every authoritative server of the key records' zone serves now for the
    plan's declared DKIM rotation (None: no rotation, or no gateway key record). The one
    observation of ``mailstack plan``/``diff``/``render`` (``cli.rotation``), of
    ``mailstack lab up`` (``lab.rotation``), of the Pulumi program
    (``providers.dkim_rotation``) and of the ``dkim.rotation`` check. MailstackError when
    the zone's servers cannot be found."""
    stack = planned.stack
    if not stack.sends_via(SenderKind.GATEWAY) or stack.dkim.previous is None:
        return None
    new, old = planned.rotation_names()
    if not new:
        return None
    zone = planned.zone_of(next(iter(new)))
    return observe(of_stack(stack.dns, zone, nameservers, timeout), new, old, timeout)


def decide(planned: Plan, state: RotationState | None, nameservers: Sequence[Nameserver] = (), timeout: float = DEFAULT_TIMEOUT) -> Plan:
    """The plan with its declared DKIM rotation decided by the one rule
    (``rules.dkim_rotation.decide``) from ``observe_plan`` and the recorded ``state``;
    unchanged without a rotation. Made before anything is published."""
    observed = observe_plan(planned, nameservers, timeout)
    if observed is None:
        return planned
    stack = planned.stack
    return planned.with_rotation(dkim_rotation.decide(stack.dkim, stack.dns.ttl, observed, state, time.time()))
