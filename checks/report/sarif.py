"""SARIF 2.1.0 report: each check id is a rule, each non-passing finding a result.

The location is the DNS name checked, as a logical location, plus the stack file as a
physical location when there is one (code-scanning services such as GitHub's need a
file to attach a result to); UIs group results by rule id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from mailstack.checks.engine.finding import Finding, Status
from mailstack.checks.engine.registry import all_checks
from mailstack.checks.report.outcome import Outcome

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {Status.FAIL: "error", Status.ERROR: "error", Status.WARN: "warning", Status.PASS: "none", Status.SKIP: "none"}
_KINDS = {Status.FAIL: "fail", Status.ERROR: "fail", Status.WARN: "review", Status.PASS: "pass", Status.SKIP: "notApplicable"}


def document(target: str, findings: Sequence[Finding], artifact: str | None = None) -> dict[str, object]:
    return fleet_document([Outcome(target, findings, artifact)])


def fleet_document(outcomes: Sequence[Outcome]) -> dict[str, object]:
    """One run: the rules of every finding, each target's results located at its
    domain and (declared) its stack file."""
    registered = {c.id: c for c in all_checks()}
    rule_ids = list(dict.fromkeys(f.id for o in outcomes for f in o.findings))
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    rules = []
    for rule_id in rule_ids:
        check = registered.get(rule_id)
        rule: dict[str, object] = {"id": rule_id, "shortDescription": {"text": check.title if check else rule_id}}
        if check and check.ref:
            rule["help"] = {"text": check.ref}
        rules.append(rule)
    results = []
    for outcome in outcomes:
        location = _location(outcome.target, outcome.stack)
        for finding in outcome.findings:
            message = finding.summary
            if finding.fix:
                message += f" Fix: {finding.fix}"
            results.append(
                {
                    "ruleId": finding.id,
                    "ruleIndex": index[finding.id],
                    "kind": _KINDS[finding.status],
                    "level": _LEVELS[finding.status],
                    "message": {"text": message},
                    "locations": [location],
                    "properties": {k: v for k, v in finding.as_json().items() if k not in ("id", "summary")},
                }
            )
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "mailstack check", "rules": rules}}, "results": results}],
    }


def _location(target: str, artifact: str | None) -> dict[str, object]:
    location: dict[str, object] = {"logicalLocations": [{"name": target, "kind": "domain"}]}
    if artifact:
        location["physicalLocation"] = {"artifactLocation": {"uri": artifact}, "region": {"startLine": 1}}
    return location


def render(target: str, findings: Sequence[Finding], artifact: str | None = None) -> str:
    """The SARIF log; ``artifact`` is the stack file's path (relative, as a URI)."""
    return json.dumps(document(target, findings, artifact), indent=2) + "\n"


def render_fleet(outcomes: Sequence[Outcome]) -> str:
    """The SARIF log of a fleet run: one run, every target's results."""
    return json.dumps(fleet_document(outcomes), indent=2) + "\n"
