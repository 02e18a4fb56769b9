"""A scriptable UDP DNS server for the engine's tests: it counts, delays and goes silent.

BIND answers the check suite's zones; what BIND cannot do on demand is what the
engine's guarantees are about: how many queries arrive for one question (the cache,
coalescing), how many are in flight at once (the per-server bound), and a server that
stops answering in the middle of a run. ``StubServer`` answers every A/TXT question
under its zone from a rule (``a``: one address, ``txt``: the name's own text), holding
each answer ``delay`` seconds, and stops answering after ``answer_first`` queries.
One thread, a heap of pending answers; it listens on a loopback address of this
engineer's range (127.0.114.0/24) on a free port, and ``stop()`` ends it.
"""

from __future__ import annotations

import heapq
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.ports import free_port

ADDRESS = "127.0.114.10"


@dataclass
class StubServer:
    zone: str = "stub.test"
    delay: float = 0.0
    #: Answer this many queries, then none (None: answer all).
    answer_first: int | None = None
    address: str = ADDRESS
    port: int = 0
    questions: Counter[tuple[str, str]] = field(default_factory=Counter)
    received: int = 0
    peak_in_flight: int = 0
    _pending: list[tuple[float, int, bytes, tuple[str, int]]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> StubServer:
        self.port = free_port(self.address)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.address, self.port))
        self._sock.setblocking(False)
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= 0x0400  # AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        if not (name == self.zone or name.endswith("." + self.zone)):
            response.set_rcode(dns.rcode.REFUSED)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "192.0.2.1"))
        elif question.rdtype == dns.rdatatype.TXT:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", f'"text of {name}"'))
        return response

    def _serve(self) -> None:
        assert self._sock is not None
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ)
        sequence = 0
        while not self._stop.is_set():
            timeout = max(0.0, self._pending[0][0] - time.monotonic()) if self._pending else 0.05
            for _ in selector.select(min(timeout, 0.05)):
                try:
                    data, peer = self._sock.recvfrom(4096)
                except BlockingIOError:
                    continue
                query = dns.message.from_wire(data)
                question = query.question[0]
                with self._lock:
                    self.received += 1
                    self.questions[(question.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(question.rdtype))] += 1
                    if self.answer_first is not None and self.received > self.answer_first:
                        continue  # gone silent
                    sequence += 1
                    heapq.heappush(self._pending, (time.monotonic() + self.delay, sequence, self.answer(query).to_wire(), peer))
                    self.peak_in_flight = max(self.peak_in_flight, len(self._pending))
            now = time.monotonic()
            while self._pending and self._pending[0][0] <= now:
                _, _, wire, peer = heapq.heappop(self._pending)
                self._sock.sendto(wire, peer)
