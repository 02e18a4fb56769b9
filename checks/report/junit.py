"""JUnit XML report: one testsuite per check group (a fleet run: one per target), one
testcase per finding, its classname ``<target>.<group>``.

CI systems show ``fail`` as a failure and ``error`` as an error, ``skip`` as skipped,
so the same findings appear natively in their test views.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from mailstack.checks.engine.finding import Finding, Status
from mailstack.checks.report.outcome import Outcome


def _text(finding: Finding) -> str:
    parts = [f"{name}: {getattr(finding, name)}" for name in ("detail", "expected", "found", "fix", "ref") if getattr(finding, name)]
    return "\n".join(parts)


def _suite(root: ET.Element, name: str, target: str, findings: Sequence[Finding]) -> None:
    suite = ET.SubElement(
        root,
        "testsuite",
        name=name,
        tests=str(len(findings)),
        failures=str(sum(f.status is Status.FAIL for f in findings)),
        errors=str(sum(f.status is Status.ERROR for f in findings)),
        skipped=str(sum(f.status is Status.SKIP for f in findings)),
    )
    for finding in findings:
        case = ET.SubElement(suite, "testcase", classname=f"{target}.{finding.group}", name=f"{finding.id}: {finding.summary}")
        if finding.status is Status.FAIL:
            ET.SubElement(case, "failure", message=finding.summary, type=finding.id).text = _text(finding)
        elif finding.status is Status.ERROR:
            ET.SubElement(case, "error", message=finding.summary, type=finding.id).text = _text(finding)
        elif finding.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=finding.summary)
        elif finding.status is Status.WARN:
            ET.SubElement(case, "system-out").text = f"WARNING: {finding.summary}\n{_text(finding)}"


def _xml(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(target: str, findings: Sequence[Finding]) -> str:
    root = ET.Element("testsuites", name=f"mailstack check {target}")
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.group, []).append(finding)
    for group, members in groups.items():
        _suite(root, group, target, members)
    return _xml(root)


def render_fleet(outcomes: Sequence[Outcome]) -> str:
    """One testsuite per target (named after it), its testcases as in ``render``."""
    root = ET.Element("testsuites", name=f"mailstack check ({len(outcomes)} targets)")
    for outcome in outcomes:
        _suite(root, outcome.target, outcome.target, outcome.findings)
    return _xml(root)
