"""Run checks: every target's checks at once on the DNS event loop, with deadlines.

Isolation rules: a check that raises ``DnsError`` becomes an ``error`` finding naming
the server and the question; any other exception becomes an ``error`` finding with the
exception text; a check still running at its target's deadline becomes an ``error``
finding too — a check is never missing from a report. One broken check never hides the
others' findings. Findings come back in registry order, whatever order the checks
finished in, so two runs compare line by line.

How a run is scheduled (``run_jobs``): async checks run as tasks on the loop, so all
their DNS questions — of every check, domain and target — are in flight together,
bounded per name server by the resolver; blocking checks run in ``workers`` threads,
and blocking probes that async checks start (pyspf, dkimpy, SMTP, HTTPS) in as many
again. Targets start while fewer than ``window`` mail domains are in flight (always at
least one target), and each target's deadline counts from its start, so a target
queued behind others never spends its time waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailstack.checks.defaults import DEFAULT_DEADLINE, DEFAULT_DEADLINE_PER_DOMAIN, DEFAULT_WINDOW, DEFAULT_WORKERS
from mailstack.checks.dns import loop
from mailstack.checks.dns.answer import DnsError
from mailstack.checks.engine.context import PROBE_THREADS, CheckContext
from mailstack.checks.engine.finding import Finding, Status
from mailstack.checks.engine.registry import Check



def deadline_for(domains: int, deadline: float = DEFAULT_DEADLINE, per_domain: float = DEFAULT_DEADLINE_PER_DOMAIN) -> float:
    """A target's deadline: ``deadline``, or ``per_domain`` for each of its mail
    domains when that is more (a 1,000-domain stack is never cut short by a default)."""
    return max(deadline, per_domain * domains)


@dataclass(frozen=True, slots=True)
class Job:
    """One target's checks and its deadline (seconds from its start)."""

    ctx: CheckContext
    checks: Sequence[Check]
    deadline: float = DEFAULT_DEADLINE


def _error(check: Check, err: BaseException) -> list[Finding]:
    if isinstance(err, DnsError):
        return [Finding(check.id, Status.ERROR, f"DNS error: {err}", detail="the check could not be decided", ref=check.ref)]
    return [Finding(check.id, Status.ERROR, f"check crashed: {type(err).__name__}: {err}", ref=check.ref)]


def _with_ref(check: Check, findings: list[Finding]) -> list[Finding]:
    return [f if f.ref else dataclasses.replace(f, ref=check.ref) for f in findings]


def run_one(check: Check, ctx: CheckContext) -> list[Finding]:
    """One blocking check, never raising: exceptions become ``error`` findings."""
    try:
        findings = check.function(ctx)
        assert isinstance(findings, list), f"{check.id} is an async check"
    except Exception as err:  # noqa: BLE001 - a crashing check must not crash the run
        return _error(check, err)
    return _with_ref(check, findings)


async def run_one_async(check: Check, ctx: CheckContext) -> list[Finding]:
    """One async check, never raising (but cancellable): exceptions become ``error``."""
    try:
        result = check.function(ctx)
        assert not isinstance(result, list), f"{check.id} is a blocking check"
        findings = await result
    except Exception as err:  # noqa: BLE001 - a crashing check must not crash the run
        return _error(check, err)
    return _with_ref(check, findings)


async def run_target(job: Job, threads: ThreadPoolExecutor) -> list[Finding]:
    """A target's checks, all at once; those not done by the deadline are ``error``."""
    running = asyncio.get_running_loop()
    tasks: dict[asyncio.Future[list[Finding]], Check] = {}
    for check in job.checks:
        if check.is_async:
            tasks[asyncio.ensure_future(run_one_async(check, job.ctx))] = check
        else:
            tasks[running.run_in_executor(threads, run_one, check, job.ctx)] = check
    results: dict[str, list[Finding]] = {}
    try:
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, job.deadline)) if tasks else (set(), set())
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise
    for task in done:
        results[tasks[task].id] = task.result()
    for task in pending:
        task.cancel()  # a thread already running ends on its own timeouts
        check = tasks[task]
        results[check.id] = [Finding(check.id, Status.ERROR, f"not finished within the deadline of {job.deadline:g}s", ref=check.ref)]
    return [finding for check in job.checks for finding in results.get(check.id, [])]


async def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int = DEFAULT_WORKERS,
    window: int = DEFAULT_WINDOW,
    on_done: Callable[[int, list[Finding]], None] | None = None,
) -> list[list[Finding]]:
    """Every job's findings, in job order; ``on_done(index, findings)`` as each ends."""
    threads = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="check")
    probes = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="probe")
    token = PROBE_THREADS.set(probes)
    results: list[list[Finding] | None] = [None] * len(jobs)
    in_flight: dict[asyncio.Task[list[Finding]], tuple[int, int]] = {}
    busy = 0
    try:
        waiting = list(enumerate(jobs))
        waiting.reverse()
        while waiting or in_flight:
            while waiting and (not in_flight or busy + _weight(waiting[-1][1]) <= window):
                index, job = waiting.pop()
                weight = _weight(job)
                in_flight[asyncio.ensure_future(run_target(job, threads))] = (index, weight)
                busy += weight
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                index, weight = in_flight.pop(task)
                busy -= weight
                results[index] = task.result()
                if on_done is not None:
                    on_done(index, task.result())
    except asyncio.CancelledError:
        for task in in_flight:
            task.cancel()
        raise
    finally:
        PROBE_THREADS.reset(token)
        # Threads still blocked in a probe end on their own per-query timeouts.
        threads.shutdown(wait=False, cancel_futures=True)
        probes.shutdown(wait=False, cancel_futures=True)
    return [r if r is not None else [] for r in results]


def _weight(job: Job) -> int:
    return max(1, len(job.ctx.domains))


def run(
    ctx: CheckContext,
    checks: Sequence[Check],
    *,
    workers: int = DEFAULT_WORKERS,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Finding]:
    """Run ``checks`` on one target from blocking code; all done by ``deadline`` s."""
    return loop.run(run_jobs([Job(ctx, checks, deadline)], workers=workers))[0]

