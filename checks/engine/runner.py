"""Run checks concurrently with bounded parallelism and an overall deadline.

Isolation rules: a check that raises ``DnsError`` becomes an ``error`` finding naming
the server and the question; any other exception becomes an ``error`` finding with the
exception text; a check still running at the deadline becomes an ``error`` finding too.
One broken check never hides the others' findings. Findings come back in registry order,
whatever order the threads finished in, so two runs compare line by line.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Sequence

from mailstack.checks.dns.resolver import DnsError
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, Status
from mailstack.checks.engine.registry import Check

DEFAULT_WORKERS = 8
DEFAULT_DEADLINE = 120.0


def run_one(check: Check, ctx: CheckContext) -> list[Finding]:
    """One check, never raising: exceptions become ``error`` findings."""
    try:
        findings = check.function(ctx)
    except DnsError as err:
        return [Finding(check.id, Status.ERROR, f"DNS error: {err}", detail="the check could not be decided", ref=check.ref)]
    except Exception as err:  # noqa: BLE001 - a crashing check must not crash the run
        return [Finding(check.id, Status.ERROR, f"check crashed: {type(err).__name__}: {err}", ref=check.ref)]
    return [f if f.ref else dataclasses.replace(f, ref=check.ref) for f in findings]


def run(
    ctx: CheckContext,
    checks: Sequence[Check],
    *,
    workers: int = DEFAULT_WORKERS,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Finding]:
    """Run ``checks`` on ``ctx``; at most ``workers`` at once, all done by ``deadline`` s."""
    results: dict[str, list[Finding]] = {}
    end = time.monotonic() + deadline
    pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="check")
    try:
        futures = {pool.submit(run_one, check, ctx): check for check in checks}
        done, pending = cf.wait(futures, timeout=max(0.0, end - time.monotonic()))
        for future in done:
            results[futures[future].id] = future.result()
        for future in pending:
            future.cancel()
            check = futures[future]
            results[check.id] = [
                Finding(check.id, Status.ERROR, f"not finished within the run deadline of {deadline:g}s", ref=check.ref)
            ]
    finally:
        # Threads still blocked in a query end on their own per-query timeout.
        pool.shutdown(wait=False, cancel_futures=True)
    return [finding for check in checks for finding in results.get(check.id, [])]
