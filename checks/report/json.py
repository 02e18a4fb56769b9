"""JSON report, exactly the documented shape (the contract CI scripts parse)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mailstack.checks.engine.finding import Finding, summary


def document(target: str, findings: Sequence[Finding]) -> dict[str, object]:
    """``{"target", "checks": [...], "summary": {"pass","warn","fail","error","skip"}}``."""
    return {
        "target": target,
        "checks": [f.as_json() for f in findings],
        "summary": summary(findings),
    }


def render(target: str, findings: Sequence[Finding]) -> str:
    return json.dumps(document(target, findings), indent=2) + "\n"
