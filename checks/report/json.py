"""JSON report, exactly the documented shape (the contract CI scripts parse).

Laid out for people too: nested objects indented, each check (a flat object) on one
line — readable and greppable, and fast at fleet scale (the compact encoder is C; an
indented one of 40,000 checks is not).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from mailstack.checks.engine.finding import Finding, summary
from mailstack.checks.report.outcome import Outcome, failing, totals


def document(target: str, findings: Sequence[Finding]) -> dict[str, object]:
    """``{"target", "checks": [...], "summary": {"pass","warn","fail","error","skip"}}``."""
    return {
        "target": target,
        "checks": [f.as_json() for f in findings],
        "summary": summary(findings),
    }


def dumps(value: object, level: int = 0) -> str:
    """JSON text: containers holding containers indented, flat ones on one line."""
    inner = "  " * (level + 1)
    if isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()):
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, level + 1) for v in value) + "\n" + "  " * level + "]"
    return json.dumps(value)


def render(target: str, findings: Sequence[Finding]) -> str:
    return dumps(document(target, findings)) + "\n"


def fleet_document(outcomes: Sequence[Outcome], *, strict: bool = False) -> dict[str, object]:
    """``{"targets": [{"target", "stack", "ok", "checks", "summary"}...], "summary",
    "failed"}``: each target in the single-target shape plus its stack file and verdict."""
    return {
        "targets": [
            {"target": o.target, "stack": o.stack, "ok": o.ok(strict=strict), **{k: v for k, v in document(o.target, o.findings).items() if k != "target"}}
            for o in outcomes
        ],
        "summary": totals(outcomes),
        "failed": failing(outcomes, strict=strict),
    }


def render_fleet(outcomes: Sequence[Outcome], *, strict: bool = False) -> str:
    return dumps(fleet_document(outcomes, strict=strict)) + "\n"
