"""Text report: one line per finding, grouped by check group, colour only on a TTY."""

from __future__ import annotations

from collections.abc import Sequence

from mailstack.checks.engine.finding import Finding, Status, summary
from mailstack.checks.report.outcome import Outcome, failing, totals

_COLOURS = {
    Status.PASS: "\033[32m",
    Status.WARN: "\033[33m",
    Status.FAIL: "\033[31m",
    Status.ERROR: "\033[35m",
    Status.SKIP: "\033[2m",
}
_RESET = "\033[0m"


def render(target: str, findings: Sequence[Finding], *, colour: bool = False, verbose: bool = False) -> str:
    """The report; details, expectations and fixes are shown for non-passing findings
    (for every finding when ``verbose``)."""
    lines = [f"mailstack check {target}"]
    # Checks finish in any order (they run concurrently): one section per group, in the
    # order groups first appear, so no group is split in two.
    order = {group: index for index, group in enumerate(dict.fromkeys(f.group for f in findings))}
    group = None
    for finding in sorted(findings, key=lambda f: order[f.group]):
        if finding.group != group:
            group = finding.group
            lines.append(f"\n[{group}]")
        label = f"{finding.status.value.upper():5}"
        if colour:
            label = f"{_COLOURS[finding.status]}{label}{_RESET}"
        lines.append(f"  {label} {finding.id:24} {finding.summary}")
        if verbose or finding.status in (Status.WARN, Status.FAIL, Status.ERROR):
            for name in ("detail", "expected", "found", "fix"):
                value = getattr(finding, name)
                if value:
                    lines.append(f"        {name}: {value}")
            if finding.ref and finding.status is not Status.PASS:
                lines.append(f"        ref: {finding.ref}")
    counts = summary(findings)
    lines.append("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines) + "\n"


def render_fleet(outcomes: Sequence[Outcome], *, colour: bool = False, verbose: bool = False, strict: bool = False) -> str:
    """Each target's report, then one summary line per target and the totals."""
    parts = [render(o.target, o.findings, colour=colour, verbose=verbose) for o in outcomes]
    lines = [f"== {len(outcomes)} targets"]
    lines += [o.summary_line(strict=strict) for o in outcomes]
    bad = failing(outcomes, strict=strict)
    lines.append("total: " + ", ".join(f"{n} {s}" for s, n in totals(outcomes).items()) + f"; {bad} of {len(outcomes)} targets failed")
    return "\n".join(parts) + "\n" + "\n".join(lines) + "\n"
