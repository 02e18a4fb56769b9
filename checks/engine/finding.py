"""The result of a check: one immutable ``Finding`` with a stable dotted id.

Findings are values, not prints: reporters render them, CI compares runs by id, and
``error`` (could not decide: timeout, SERVFAIL) is kept apart from ``fail`` (decided,
wrong) so a flaky resolver never looks like a broken domain or a healthy one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """Outcome of one check; the order is the severity order reporters sort by."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"


#: The keys of a JSON summary, in the documented order.
STATUSES: tuple[Status, ...] = (Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.SKIP)


@dataclass(frozen=True, slots=True)
class Finding:
    """What one check found about one subject.

    ``expected``/``found`` are what the declaration (or the RFC) asks for and what DNS
    or the server showed; ``fix`` is the exact record or action that would make the
    check pass; ``ref`` the RFC section enforced (filled from the registry when empty).
    """

    id: str
    status: Status
    summary: str
    detail: str = ""
    expected: str = ""
    found: str = ""
    fix: str = ""
    ref: str = ""

    @property
    def group(self) -> str:
        """The part of the id before the first dot (``spf`` for ``spf.lookups``)."""
        return self.id.split(".", 1)[0]

    def as_json(self) -> dict[str, str]:
        """The documented JSON shape of one check."""
        return {
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "detail": self.detail,
            "expected": self.expected,
            "found": self.found,
            "fix": self.fix,
            "ref": self.ref,
        }


def passed(id: str, summary: str, **fields: str) -> Finding:
    """A ``pass`` finding."""
    return Finding(id, Status.PASS, summary, **fields)


def warned(id: str, summary: str, **fields: str) -> Finding:
    """A ``warn`` finding: works, but against advice."""
    return Finding(id, Status.WARN, summary, **fields)


def failed(id: str, summary: str, **fields: str) -> Finding:
    """A ``fail`` finding: decided and wrong."""
    return Finding(id, Status.FAIL, summary, **fields)


def errored(id: str, summary: str, **fields: str) -> Finding:
    """An ``error`` finding: the check could not decide (DNS error, crash, deadline)."""
    return Finding(id, Status.ERROR, summary, **fields)


def skipped(id: str, summary: str, **fields: str) -> Finding:
    """A ``skip`` finding: the check does not apply to this domain or declaration."""
    return Finding(id, Status.SKIP, summary, **fields)


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts per status, every status present (zero included), in documented order."""
    counts = Counter(f.status for f in findings)
    return {status.value: counts.get(status, 0) for status in STATUSES}


def exit_code(findings: Iterable[Finding], *, strict: bool = False) -> int:
    """0 when nothing failed, 1 otherwise; ``error`` fails (undecided is not ok),
    ``warn`` fails only when strict."""
    bad = {Status.FAIL, Status.ERROR} | ({Status.WARN} if strict else set())
    return 1 if any(f.status in bad for f in findings) else 0
