"""One guarded RFC 2136 update per zone: every write of a change set, or none of them.

RFC 2136 §3.2–3.4: a server checks every prerequisite of an update before it changes
anything, and applies the update section as one transaction. So mailstack puts all
writes of a zone into one message and guards it with the zone as it was read:

- every record set the update touches must still be exactly as read (value-dependent
  "RRset exists", §2.4.2, with the live rdata as served — foreign records included), or
  still absent ("RRset does not exist", §2.4.3);
- a name gaining non-CNAME data must still have no CNAME, and a name gaining a CNAME
  must still be unused if it was (§2.4.4–2.4.5).

If anyone changed those sets since the read, the server answers NXRRSET/YXRRSET and
writes nothing; the next run plans again against what is there. Inside the message
single records are deleted (class NONE, §2.5.4) before single records are added
(§2.5.1), so a replaced SPF never meets its successor, and address records are added
before the MX that points at them (BIND checks an in-zone MX target's address).
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.name
import dns.update

from mailstack.core import zonefile
from mailstack.core.errors import ProviderError
from mailstack.plan.changes import Action, Change
from mailstack.rfc2136 import wire
from mailstack.rfc2136.wire import Server, ZoneSnapshot


def _name(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".") + ".")


def _add_order(change: Change) -> tuple[int, str, str]:
    return (0 if change.type in ("A", "AAAA") else 1, change.name, change.type)


def zone_update(server: Server, zone: str, writes: Sequence[Change], snapshot: ZoneSnapshot) -> dns.update.UpdateMessage:
    """The one update message that makes ``writes`` in ``zone``, guarded by ``snapshot``."""
    update = wire.message(server, zone)
    touched = sorted({(c.name, c.type) for c in writes})
    for name, rdtype in touched:
        live = snapshot.rdataset(name, rdtype, ttl=0)
        if live is None:
            update.absent(_name(name), rdtype)
        else:
            update.present(_name(name), live)
    for name in sorted({n for n, _ in touched}):
        written = {t for n, t in touched if n == name}
        if "CNAME" not in written and snapshot.rdataset(name, "CNAME") is None:
            update.absent(_name(name), "CNAME")
        if "CNAME" in written and not any(n == name for n, _ in snapshot.rrsets):
            update.absent(_name(name))
    for change in writes:
        if change.action in (Action.DELETE, Action.UPDATE):
            assert change.live is not None
            rdata = snapshot.rdata_of(change.live)
            if rdata is None:
                raise ProviderError(f"{change.name} {change.type} {change.live.value!r} was not in the zone as read: plan again")
            update.delete(_name(change.name), rdata)
    for change in sorted((c for c in writes if c.action in (Action.CREATE, Action.UPDATE)), key=_add_order):
        assert change.planned is not None and change.ttl is not None
        if change.planned.needs_gateway_key:
            raise ProviderError(f"{change.name} {change.type}: the gateway's DKIM key is not known yet; nothing was written")
        update.add(_name(change.name), change.ttl, zonefile.rdata(change.planned))
    return update


def describe(writes: Sequence[Change]) -> str:
    """The writes of one update in a few words, for messages."""
    counts = {a: sum(1 for c in writes if c.action is a) for a in (Action.CREATE, Action.UPDATE, Action.DELETE)}
    return ", ".join(f"{n} {a.value}" for a, n in counts.items() if n) or "nothing"
