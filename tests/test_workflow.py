"""The GitHub Actions gate (.github/workflows/mail-dns.yml): valid YAML under the
repository's yamllint rules, and every command it runs exists — each ``mailstack``
invocation parses with our own CLI parser, the policy pack and its config file are
where the ``pulumi`` steps say."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from mailstack.cli import main as cli
from mailstack.config import stackfile
from mailstack.policy import policies
from tests import project

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "mail-dns.yml"
LINT_CONFIG = YamlLintConfig(file=str(ROOT / ".yamllint"))
#: What the workflow's shell variables hold, for parsing its commands.
SHELL_VALUES = {"STACK": "online", "POLICY_CONFIG": "policy/config.example.json", "PWD": "/tmp", "PR": "1"}


def workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def run_scripts(job: str | None = None) -> list[str]:
    jobs = workflow()["jobs"]
    selected = [jobs[job]] if job else list(jobs.values())
    return [step["run"] for j in selected for step in j["steps"] if "run" in step]


def commands(script: str, program: str) -> list[list[str]]:
    """Each invocation of ``program`` in a shell script, as argv after the program
    name, shell variables replaced by example values, stopping at pipes/redirections."""
    text = script.replace("\\\n", " ")
    text = re.sub(r'"?\$\{\w+\[@\]\}"?', "", text)  # "${key[@]}": optional arrays
    text = re.sub(r"\$\{?(\w+)\}?", lambda m: SHELL_VALUES.get(m.group(1), m.group(0)), text)
    found: list[list[str]] = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for index, token in enumerate(tokens):
            if token != program:
                continue
            argv: list[str] = []
            for item in tokens[index + 1:]:
                if set(item) <= set("|&;<>()") or item == "2":
                    break
                argv.append(item)
            found.append(argv)
    return found


def lint(text: str) -> list[str]:
    return [f"{p.line}:{p.column} {p.desc} ({p.rule})" for p in linter.run(text, LINT_CONFIG)]


@pytest.mark.parametrize("path", [WORKFLOW, ROOT / "policy" / "PulumiPolicy.yaml", ROOT / ".yamllint"], ids=lambda p: p.name)
def test_yaml_lints_clean(path: Path) -> None:
    assert lint(path.read_text(encoding="utf-8")) == []


def test_lint_catches_a_broken_workflow() -> None:
    """The lint is real: a duplicated key and a bare `on: yes` are reported."""
    broken = WORKFLOW.read_text(encoding="utf-8").replace('"on":', "on: yes\nname: twice\n\"on\":", 1)
    problems = lint(broken)
    assert any("duplication of key" in p for p in problems), problems
    assert any("truthy" in p for p in problems), problems


def test_triggers_and_jobs() -> None:
    document = workflow()
    triggers = document["on"]
    assert set(triggers) >= {"pull_request", "push", "schedule"}
    assert triggers["push"]["branches"] == ["main"]
    jobs = document["jobs"]
    assert "pull_request" in jobs["preview"]["if"] and jobs["preview"]["needs"] == "tests"
    assert "refs/heads/main" in jobs["deploy"]["if"] and jobs["deploy"]["needs"] == "tests"
    assert jobs["preview"]["permissions"]["pull-requests"] == "write"


def test_every_mailstack_command_parses() -> None:
    parser = cli.build_parser()
    used: dict[str, list[str]] = {}
    for script in run_scripts():
        for argv in commands(script, "mailstack"):
            args = parser.parse_args(argv)  # SystemExit (a failure) on an unknown option
            assert args.handler is not None
            used.setdefault(argv[0], []).append(" ".join(argv))
    assert {"records", "plan", "diff", "check"} <= set(used), used
    assert any("--owned previous-records.json" in c for c in used["plan"]), used["plan"]
    deploy = [" ".join(a) for s in run_scripts("deploy") for a in commands(s, "mailstack")]
    assert any(c.startswith("diff ") and "--wait" in c for c in deploy), deploy
    assert any(c.startswith("check ") and "--wait" in c and "--format junit --output report.xml" in c for c in deploy), deploy


def test_pulumi_steps_use_the_policy_pack_of_this_repository() -> None:
    previews = [a for s in run_scripts("preview") for a in commands(s, "pulumi") if a[:1] == ["preview"]]
    ups = [a for s in run_scripts("deploy") for a in commands(s, "pulumi") if a[:1] == ["up"]]
    assert previews and ups
    for argv in previews + ups:
        pack = argv[argv.index("--policy-pack") + 1]
        assert (ROOT / pack / "PulumiPolicy.yaml").is_file() and (ROOT / pack / "__main__.py").is_file()
        config = ROOT / argv[argv.index("--policy-pack-config") + 1]
        assert config.is_file()
        assert set(yaml.safe_load(config.read_text(encoding="utf-8"))) <= {*policies.names_of_policies(), "all"}
    assert "--diff" in previews[0]
    assert "--yes" in ups[0]


def test_default_stack_and_ci_entry_point_exist() -> None:
    matrix = workflow()["jobs"]["deploy"]["strategy"]["matrix"]["stack"]
    default = re.search(r"'\[\"(\w[\w-]*)\"\]'", matrix)
    assert default and project.stack_path(default.group(1)).is_file()
    tests_step = workflow()["jobs"]["tests"]["steps"][-1]["run"]
    assert ".ci/run" in tests_step and (ROOT / ".ci" / "run").is_file()
    for secret in ("CLOUDFLARE_API_TOKEN", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"):
        assert f"secrets.{secret}" in WORKFLOW.read_text(encoding="utf-8")
