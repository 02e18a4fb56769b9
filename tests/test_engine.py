"""The async check engine against scriptable DNS servers (``tests.dns_stub``): one query
per question however many checks and domains ask, concurrent askers coalesced, the
per-server bound on queries in flight, a server that stops answering mid-run, async
and blocking checks mixed under one deadline, and the blocking face of the resolver."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from mailstack.checks.dns import loop
from mailstack.checks.dns.answer import DnsError, Reason, parse_server
from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.checks.dns.resolver import Resolver
from mailstack.checks.engine import runner
from mailstack.checks.engine.context import CheckContext, gather
from mailstack.checks.engine.finding import Finding, Status, passed
from mailstack.checks.engine.registry import Check
from tests.dns_stub import StubServer


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def _resolver(server: StubServer, *, timeout: float = 1.0, concurrency: int = 64) -> Resolver:
    return Resolver.from_strings([server.nameserver], timeout, concurrency=concurrency).cached()


def test_identical_questions_are_asked_once_and_coalesced(stub: StubServer) -> None:
    stub.delay = 0.2  # the first query is still in flight when the others ask
    resolver = _resolver(stub)

    async def ask() -> list[str]:
        answers = await gather(resolver.aio.txt("one.stub.test") for _ in range(50))
        again = await resolver.aio.query("one.stub.test", "TXT", follow=False)  # same response, other view
        return [a.texts()[0] for a in [*answers, again]]

    texts = loop.run(ask())
    assert set(texts) == {"text of one.stub.test"}
    assert stub.questions[("one.stub.test", "TXT")] == 1
    assert resolver.stats.sent == 1 and resolver.stats.coalesced == 49 and resolver.stats.cached == 1


def test_a_cached_error_is_one_query_and_a_fresh_exception_each_time(stub: StubServer) -> None:
    resolver = _resolver(stub)
    errors = []
    for _ in range(3):
        with pytest.raises(DnsError) as info:
            resolver.txt("outside.invalid")  # REFUSED: not the stub's zone
        errors.append(info.value)
    assert stub.questions[("outside.invalid", "TXT")] == 1
    assert {e.reason for e in errors} == {Reason.REFUSED} and len({id(e) for e in errors}) == 3


def test_queries_in_flight_per_server_are_bounded(stub: StubServer) -> None:
    stub.delay = 0.05
    resolver = _resolver(stub, concurrency=4)

    async def ask() -> None:
        await gather(resolver.aio.query(f"n{i}.stub.test", "A") for i in range(40))

    start = time.monotonic()
    loop.run(ask())
    elapsed = time.monotonic() - start
    assert stub.received == 40
    assert stub.peak_in_flight == 4  # never more than the bound, and the bound is used
    assert elapsed >= 40 / 4 * 0.05 * 0.9


def test_a_server_that_stops_answering_mid_run_errors_every_check_in_bounded_time(stub: StubServer) -> None:
    """The stub answers 20 queries, then nothing: the questions after that time out
    (the first few) or fail at once, naming the server (the rest); the run ends within
    about one timeout, not one timeout per question."""
    stub.answer_first = 20
    timeout = 0.5
    resolver = _resolver(stub, timeout=timeout, concurrency=8)
    names = [f"d{i}.stub.test" for i in range(200)]

    async def one_check(c: CheckContext) -> list[Finding]:
        findings = []
        for name in names:
            try:
                await c.dns.txt(name)  # one after another: the server dies mid-run
                findings.append(passed("t.each", f"{name} answered"))
            except DnsError as err:
                findings.append(Finding("t.each", Status.ERROR, f"{name}: DNS error: {err}"))
        return findings

    ctx = CheckContext("stub.test", resolver)
    start = time.monotonic()
    findings = runner.run(ctx, [Check("t.each", "t", one_check)], deadline=30)
    elapsed = time.monotonic() - start
    statuses = [f.status for f in findings]
    assert statuses[:20] == [Status.PASS] * 20
    assert statuses[20:] == [Status.ERROR] * 180
    assert all(stub.nameserver in f.summary for f in findings[20:])
    assert "stopped answering" in findings[-1].summary
    assert elapsed < 20 * 0.01 + 5 * timeout  # a few timeouts, not 180
    assert stub.received < 40  # the dead server is not asked 180 times


def test_async_and_blocking_checks_share_the_cache_and_one_deadline(stub: StubServer) -> None:
    resolver = _resolver(stub)
    release = threading.Event()

    async def async_check(c: CheckContext) -> list[Finding]:
        answer = await c.dns.query("shared.stub.test", "A")
        return [passed("t.async", f"async {answer.addresses()[0]}")]

    def blocking_check(c: CheckContext) -> list[Finding]:
        answer = c.resolver.query("shared.stub.test", "A")  # from a worker thread, same cache
        return [passed("t.blocking", f"blocking {answer.addresses()[0]}")]

    async def hanging_async(c: CheckContext) -> list[Finding]:
        await asyncio.sleep(30)
        return []

    def hanging_blocking(c: CheckContext) -> list[Finding]:
        release.wait(30)
        return []

    checks = [Check("t.async", "t", async_check), Check("t.blocking", "t", blocking_check),
              Check("t.hang-async", "t", hanging_async), Check("t.hang-blocking", "t", hanging_blocking)]
    start = time.monotonic()
    try:
        findings = runner.run(CheckContext("stub.test", resolver), checks, deadline=1.0)
    finally:
        release.set()
    assert time.monotonic() - start < 5
    assert [(f.id, f.status) for f in findings] == [
        ("t.async", Status.PASS), ("t.blocking", Status.PASS), ("t.hang-async", Status.ERROR), ("t.hang-blocking", Status.ERROR),
    ]
    assert all("deadline of 1s" in f.summary for f in findings[2:])
    assert stub.questions[("shared.stub.test", "A")] == 1


def test_fleet_jobs_share_one_resolver_and_start_within_the_window(stub: StubServer) -> None:
    resolver = _resolver(stub)
    started: list[int] = []

    async def check(c: CheckContext) -> list[Finding]:
        started.append(int(c.domain.split(".")[0][1:]))
        await c.dns.txt("common.stub.test")
        await asyncio.sleep(0.05)
        return [passed("t.one", c.domain)]

    jobs = [runner.Job(CheckContext(f"t{i}.stub.test", resolver), [Check("t.one", "t", check)], 10) for i in range(12)]
    done: list[int] = []
    results = loop.run(runner.run_jobs(jobs, window=4, on_done=lambda index, _: done.append(index)))
    assert [r[0].summary for r in results] == [f"t{i}.stub.test" for i in range(12)]
    assert sorted(done) == list(range(12))
    assert stub.questions[("common.stub.test", "TXT")] == 1
    assert started[:4] == [0, 1, 2, 3]  # four at once (one domain each), the rest as they end


def test_the_deadline_scales_with_a_target_s_domains() -> None:
    assert runner.deadline_for(1) == 120
    assert runner.deadline_for(1000) == 1000
    assert runner.deadline_for(50, 10, 0.5) == 25


def test_blocking_resolver_on_the_loop_is_refused(stub: StubServer) -> None:
    resolver = _resolver(stub)

    async def misuse() -> None:
        resolver.txt("x.stub.test")

    with pytest.raises(loop.LoopReentry):
        loop.run(misuse())


def test_dnssec_questions_set_the_do_bit_and_cache_apart(stub: StubServer) -> None:
    seen: list[bool] = []
    original = stub.answer

    def answer(query):  # type: ignore[no-untyped-def]
        seen.append(bool(query.ednsflags & 0x8000))
        return original(query)

    stub.answer = answer  # type: ignore[method-assign]
    resolver = AsyncResolver([parse_server(stub.nameserver)], 1.0, cached=True)

    async def ask() -> None:
        await resolver.query("sig.stub.test", "A", dnssec=True)
        await resolver.query("sig.stub.test", "A")

    loop.run(ask())
    assert seen == [True, False]
