"""``mailstack diff``'s logic: the record plan against what DNS serves, per server.

The comparison itself is the check suite's (``mailstack.checks.dns.published``: fetch, then a pure
``compare``); this module adds what a drift detector needs around it:

- **stale DKIM selectors.** DNS cannot list the names of a zone (no AXFR for us, and
  NSEC walking is neither portable nor polite), so a selector the stack declared once
  and dropped cannot be found by listing. What can be asked is a *known* name: the
  selectors of every sender profile mailstack knows (odoo, google, mailjet,
  selector1/2 of Microsoft 365) and the stack's own gateway selector, at every name the
  stack sends from. A key or CNAME there that the plan does not declare is ``extra``
  when it is mailstack's (``owned``: the previous deployment's records), else
  ``unmanaged``. A selector with any other name is invisible to this diff.
- **several servers.** ``diff_servers`` asks each server on its own, so a secondary that
  has not transferred the new zone yet shows as drift, and ``wait_until_agreed`` polls
  the zone's authoritative servers until all of them serve the plan or a deadline
  passes (CI, right after ``pulumi up``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mailstack.checks.dns import published
from mailstack.checks.dns.published import Change, RecordDiff
from mailstack.checks.dns.resolver import (
    DnsError,
    Reason,
    Resolver,
    Server,
    parse_server,
)
from mailstack.core import names
from mailstack.core.errors import MailstackError
from mailstack.core.model import Dkim
from mailstack.core.record import Record
from mailstack.plan import Plan
from mailstack.rules import dkim, senders

#: Selectors of the sender profiles mailstack knows (see mailstack.rules.senders).
KNOWN_SELECTORS: tuple[str, ...] = (
    senders.ODOO_DKIM_SELECTOR,
    *senders.DEFAULT_SELECTORS.values(),
    *senders.MICROSOFT_SELECTORS,
    Dkim().selector,
)
#: Changes that make a diff non-empty; UNKNOWN (a failed query) is an error, not drift.
DRIFT = frozenset({Change.MISSING, Change.DIFFERENT, Change.EXTRA})


def selector_names(plan: Plan) -> list[str]:
    """Known DKIM selector names the stack does not declare, where it sends from."""
    stack = plan.stack
    declared = {r.name for r in plan.records}
    selectors = {*KNOWN_SELECTORS, stack.dkim.selector}
    selectors |= {s.dkim_selector for s in stack.outbound if s.dkim_selector}
    found: list[str] = []
    for sending_name in plan.all_sending_names:
        for selector in sorted(selectors):
            name = dkim.record_name(selector, sending_name)
            if name not in declared and name not in found:
                found.append(name)
    return found


def observe(plan: Plan, resolver: Resolver) -> dict[tuple[str, str], published.Observed]:
    """The diff's only I/O, behind one function: every planned (name, type) and the TXT
    at every known selector name (the check engine may make this asynchronous)."""
    return published.fetch(plan.records, resolver, [(name, "TXT") for name in selector_names(plan)])


def diff(plan: Plan, resolver: Resolver, owned: Sequence[Record] = ()) -> list[RecordDiff]:
    """Every planned record's live state, then the other records at the names looked at.

    ``owned`` are the records mailstack wrote before (the ``records`` stack output, the
    lab's journal): one of them live but no longer planned is ``extra`` (drift); a record
    nobody told us is mailstack's is ``unmanaged`` (shown, not drift).
    """
    selectors = selector_names(plan)
    result = published.compare(
        plan.records, observe(plan, resolver), gateway_key_known=plan.gateway_key is not None,
        owned=owned, extra_names=selectors,
    )
    return [_selector_note(d) if d.name in selectors else d for d in result]


def _selector_note(item: RecordDiff) -> RecordDiff:
    selector = item.name.split(".", 1)[0]
    if item.change is Change.EXTRA:
        return replace(item, note=f"stale DKIM selector {selector}: mailstack's, no longer declared by the stack")
    if item.change is Change.UNMANAGED:
        return replace(item, note=f"a key at DKIM selector {selector}, which the stack does not declare: left alone "
                                  "(if it is a stale selector of mailstack's, pass --owned or delete it)")
    return item


@dataclass(frozen=True, slots=True)
class ServerDiff:
    """The diff as one server (or the resolver's servers, as a whole) sees it."""

    server: str
    diffs: tuple[RecordDiff, ...]

    @property
    def drift(self) -> list[RecordDiff]:
        return [d for d in self.diffs if d.change in DRIFT]

    @property
    def errors(self) -> list[RecordDiff]:
        return [d for d in self.diffs if d.change is Change.UNKNOWN]

    @property
    def agrees(self) -> bool:
        return not self.drift and not self.errors


def diff_servers(plan: Plan, servers: Sequence[Server], *, timeout: float, owned: Sequence[Record] = ()) -> list[ServerDiff]:
    """The diff against each server on its own."""
    return [ServerDiff(str(server), tuple(diff(plan, Resolver((server,), timeout), owned))) for server in servers]


def authoritative_servers(zones: Sequence[str], resolver: Resolver, port: int = 53) -> list[Server]:
    """The addresses of every zone's NS hosts, asked through ``resolver``.

    ``port`` is where the authoritative servers listen (53 in the world; tests and
    hidden primaries may differ). Raises DnsError when a zone's NS set cannot be read.
    """
    servers: list[Server] = []
    for zone in zones:
        answer = resolver.query(zone, "NS")
        hosts = answer.targets()
        if not hosts:
            raise DnsError(zone, "NS", Reason.RCODE, resolver.active_servers(), "the zone has no NS records")
        for host in hosts:
            for address in resolver.addresses(names.normalize(host)):
                server = Server(address, port)
                if server not in servers:
                    servers.append(server)
    return servers


@dataclass(frozen=True, slots=True)
class WaitResult:
    """The last poll's diffs, and how many polls it took."""

    results: list[ServerDiff]
    polls: int
    agreed: bool


def wait_until_agreed(
    poll: Callable[[], list[ServerDiff]],
    seconds: float,
    *,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Poll until every server agrees with the plan or ``seconds`` have passed.

    Polls at least once; the last results are returned either way, so the caller
    reports what still differs when the deadline passed.
    """
    deadline = clock() + max(seconds, 0.0)
    polls = 0
    while True:
        results = poll()
        polls += 1
        if all(r.agrees for r in results):
            return WaitResult(results, polls, True)
        remaining = deadline - clock()
        if remaining <= 0:
            return WaitResult(results, polls, False)
        sleep(min(interval, remaining))


def wait_for_stack(
    plan: Plan,
    nameservers: Sequence[str],
    seconds: float,
    *,
    timeout: float,
    interval: float = 2.0,
    owned: Sequence[Record] = (),
) -> WaitResult:
    """``--wait`` of ``diff`` and ``check``: poll the servers that must serve the plan
    (``nameservers``, else the NS hosts of the stack's zones) until all of them do."""
    try:
        servers = [parse_server(text) for text in nameservers]
    except ValueError as err:
        raise MailstackError(f"--nameserver: {err}") from err
    if not servers:
        servers = authoritative_servers(list(plan.managed_zones), Resolver((), timeout))
    return wait_until_agreed(
        lambda: diff_servers(plan, servers, timeout=timeout, owned=owned),
        seconds,
        interval=interval,
    )
