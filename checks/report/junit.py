"""JUnit XML report: one testsuite per check group, one testcase per finding.

CI systems show ``fail`` as a failure and ``error`` as an error, ``skip`` as skipped,
so the same findings appear natively in their test views.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from mailstack.checks.engine.finding import Finding, Status


def _text(finding: Finding) -> str:
    parts = [f"{name}: {getattr(finding, name)}" for name in ("detail", "expected", "found", "fix", "ref") if getattr(finding, name)]
    return "\n".join(parts)


def render(target: str, findings: Sequence[Finding]) -> str:
    root = ET.Element("testsuites", name=f"mailstack check {target}")
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.group, []).append(finding)
    for group, members in groups.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=group,
            tests=str(len(members)),
            failures=str(sum(f.status is Status.FAIL for f in members)),
            errors=str(sum(f.status is Status.ERROR for f in members)),
            skipped=str(sum(f.status is Status.SKIP for f in members)),
        )
        for finding in members:
            case = ET.SubElement(suite, "testcase", classname=f"{target}.{group}", name=f"{finding.id}: {finding.summary}")
            if finding.status is Status.FAIL:
                ET.SubElement(case, "failure", message=finding.summary, type=finding.id).text = _text(finding)
            elif finding.status is Status.ERROR:
                ET.SubElement(case, "error", message=finding.summary, type=finding.id).text = _text(finding)
            elif finding.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=finding.summary)
            elif finding.status is Status.WARN:
                ET.SubElement(case, "system-out").text = f"WARNING: {finding.summary}\n{_text(finding)}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
