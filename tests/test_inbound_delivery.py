"""Inbound delivery at the gateway's configured concurrency loses and duplicates nothing.

``gateway.mailgate.concurrency`` lets Postfix run that many mailgates at once into
Odoo. The proof that this is safe is end to end, on the real Postfix running the
rendered configuration (``tests/inbound_gateway.py``): several outside clients send at
once, Odoo goes away in the middle of the run (deliveries in flight are cut, the rest
are deferred) and comes back; every message must then be stored exactly once (a
delivery cut after Odoo stored it is retried, and Odoo ignores a Message-Id it already
has, as Odoo 17's ``message_process`` does), with every recipient's Delivered-To line,
nothing bounced, nothing left in the queue.
"""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from collections.abc import Iterator

import pytest

from mailstack.lab.postfix import runs_as, mailgate_python, wait_for
from tests.inbound_gateway import Gateway, inbound_gateway, message_id, recipients_of
from tests.servers import require, require_binary, require_root

pytestmark = pytest.mark.servers

CONCURRENCY = 16


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    require_root()
    for binary in ("postfix", "postconf", "postmap", "postqueue", "opendkim", "ip"):
        require_binary(binary)
    require(runs_as("nobody"), f"a python3 the unprivileged mailgate user can run ({mailgate_python()}; apt-get install python3)")
    with inbound_gateway("ms14-deliver", CONCURRENCY) as running:
        yield running


def test_the_rendered_concurrency_is_the_stacks(gateway: Gateway) -> None:
    assert gateway.postfix.postconf("odoo_destination_concurrency_limit") == str(CONCURRENCY)


def test_many_clients_and_an_odoo_outage_lose_and_duplicate_nothing(gateway: Gateway) -> None:
    first = gateway.send(40, 8)  # messages 0..39 from 8 clients at once
    assert not first["failures"]
    wait_for(lambda: len(gateway.stored()) >= 5, 60, interval=0.05, what="the first deliveries")
    gateway.standin.stop()  # Odoo goes away with deliveries in flight
    try:
        during = gateway.send(40, 8, first=40)  # messages 40..79 while Odoo is away
    finally:
        gateway.standin.start()
    assert not during["failures"]
    sent = set(first["accepted"]) | set(during["accepted"])

    def all_stored() -> bool:
        # A delivery that failed while Odoo was away waits out Postfix's backoff (and
        # Odoo's destination is throttled after failures) unless the queue is flushed;
        # one failing after an earlier flush needs another.
        gateway.postfix.flush()
        return sent <= set(gateway.stored())

    wait_for(all_stored, 180, interval=1.0, what="every message stored after Odoo came back")
    wait_for(lambda: not gateway.postfix.queue(), 60, what="an empty queue")

    routed = gateway.routed()
    assert set(routed) == {message_id(i) for i in range(80)}
    wrong = {mid: dict(routes) for mid, routes in routed.items()
             if routes != Counter(recipients_of(int(mid.split("-")[1].split("@")[0])))}
    assert wrong == {}  # every alias of every message exactly once: nothing lost, nothing twice
    log = gateway.postfix.log()
    assert "status=deferred" in log  # the outage was real: deliveries were retried
    assert "status=bounced" not in log
    for stored in gateway.standin.messages():
        index = int(str(stored["message_id"]).split("-")[1].split("@")[0])
        parsed = email.message_from_bytes(stored["raw"], policy=email.policy.default)
        assert parsed.get_all("Delivered-To") == recipients_of(index), stored["message_id"]


def test_killing_the_resident_mailgate_mid_run_defers_and_delivers_each_once(gateway: Gateway) -> None:
    """The resident mailgate is SIGKILLed with deliveries in flight (some already at Odoo,
    whose answer then reaches nobody), more mail arrives while it is gone, and it comes
    back: Postfix defers what got no LMTP reply and delivers it later, and Odoo routes
    every alias of every Message-Id exactly once (a copy of a message it stored is
    ignored by its Message-Id, as Odoo 17's message_process does)."""
    assert gateway.mailgated is not None  # the default delivery: LMTP
    first, count = 200, 200
    before = len(gateway.stored())
    log_before = len(gateway.postfix.log())
    sending = gateway.send_async(count, 10, first=first)  # 200 messages from 10 clients at once
    wait_for(lambda: len(gateway.stored()) >= before + 5, 60, interval=0.02, what="the first deliveries")
    gateway.mailgated.kill()  # deliveries in flight get no reply
    try:
        later = gateway.send(20, 4, first=first + count)  # and mail keeps arriving meanwhile
        result = sending()
    finally:
        gateway.mailgated.start()
    assert not result["failures"] and not later["failures"]
    sent = set(result["accepted"]) | set(later["accepted"])
    assert len(sent) == count + 20

    def all_stored() -> bool:
        gateway.postfix.flush()
        return sent <= set(gateway.stored())

    wait_for(all_stored, 180, interval=1.0, what="every message stored after the mailgate came back")
    wait_for(lambda: not gateway.postfix.queue(), 60, what="an empty queue")
    routed = gateway.routed()
    wrong = {mid: dict(routes) for mid in sent
             if (routes := routed.get(mid, Counter())) != Counter(recipients_of(int(mid.split("-")[1].split("@")[0])))}
    assert wrong == {}  # every alias of every message exactly once
    log = gateway.postfix.log()[log_before:]
    assert "status=deferred" in log and "status=bounced" not in log
    # Postfix saw the service go away in the middle of deliveries (no reply after the end
    # of data), and deferred the later ones (refused, or the next hop marked down).
    assert "lost connection with" in log or "Connection reset" in log, log[-2000:]
    reasons = {line.split("status=deferred", 1)[1][:60] for line in log.splitlines() if "status=deferred" in line}
    assert any("refused" in r or "temporarily suspended" in r for r in reasons), reasons
