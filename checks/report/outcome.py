"""What a fleet report holds per target: its name, its findings and where it was declared.

A fleet run (several ``--stack``/``--stack-file``/``--domain``, ``--all-stacks``,
``--domains-file``) renders one report of many ``Outcome`` values; each renderer has a
``render_fleet`` beside its single-target ``render``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailstack.checks.engine.finding import Finding, exit_code, summary


@dataclass(frozen=True, slots=True)
class Outcome:
    """One target's findings; ``stack`` is the stack file (as a path or URI) for a
    declared target, None for a bare domain."""

    target: str
    findings: Sequence[Finding]
    stack: str | None = None

    def ok(self, *, strict: bool = False) -> bool:
        """True when nothing failed (``error`` fails; ``warn`` only when strict)."""
        return exit_code(self.findings, strict=strict) == 0

    def summary_line(self, *, strict: bool = False) -> str:
        """``example.net: 40 pass, 1 warn, 0 fail, 0 error, 3 skip (ok)``."""
        counts = ", ".join(f"{n} {s}" for s, n in summary(self.findings).items())
        where = f" [{self.stack}]" if self.stack else ""
        return f"{self.target}{where}: {counts} ({'ok' if self.ok(strict=strict) else 'FAILED'})"


def totals(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Counts per status over every target, in documented order."""
    return summary(f for o in outcomes for f in o.findings)


def failing(outcomes: Sequence[Outcome], *, strict: bool = False) -> int:
    """How many targets failed."""
    return sum(not o.ok(strict=strict) for o in outcomes)
