"""Start-up's import rule: a command imports what it uses and nothing else.

Each command runs in a fresh interpreter that then lists ``sys.modules``: no command
but the Pulumi program loads Pulumi (``pulumi``, ``pulumi_cloudflare``,
``pulumi_command``, ``pulumi_tls``, ``pulumi_policy``); no command but ``lab`` loads the
lab; ``--help`` loads no subcommand, no check and no dnspython resolver; ``records``
loads no check. (How fast that makes them is measured by ``benchmarks/bench.py``, not
asserted here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import project
from tests.dns_stub import ADDRESS

PULUMI = ("pulumi", "pulumi_cloudflare", "pulumi_command", "pulumi_tls", "pulumi_policy")

PROBE = """
import contextlib, io, json, sys
from mailstack.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[2:])
    except SystemExit as exit:
        code = exit.code
with open(sys.argv[1], "w") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""


def loaded(tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    """(exit code, modules loaded) of ``mailstack ARGV`` in a fresh interpreter."""
    report = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", PROBE, str(report), *argv], cwd=project.ROOT, check=True, timeout=120)
    result = json.loads(report.read_text())
    return result["code"], set(result["modules"])


#: Import nothing: the check run's defaults, which shared options show in --help.
HARMLESS = {"mailstack.checks", "mailstack.checks.defaults"}


def prefixed(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules - HARMLESS if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_help_loads_no_subcommand_no_check_no_resolver(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "--help")
    assert code == 0
    assert not prefixed(modules, *PULUMI, "mailstack.lab", "mailstack.checks", "mailstack.config", "mailstack.plan", "dns", "yaml", "jinja2")
    assert not prefixed(modules, *(f"mailstack.cli.{c}" for c in ("records", "render", "check", "diff", "lab")))


def test_records_loads_no_pulumi_no_lab_no_checks(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "records", "--stack", "onpremise", "--format", "json")
    assert code == 0
    assert not prefixed(modules, *PULUMI, "mailstack.lab", "mailstack.checks", "mailstack.providers", "dns.resolver", "dns.asyncquery")


def test_render_loads_no_pulumi_no_lab(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "render", "--stack", "onpremise", "--out", str(tmp_path / "out"))
    assert code == 0
    assert not prefixed(modules, *PULUMI, "mailstack.lab", "mailstack.checks", "mailstack.providers")


@pytest.mark.parametrize("command", ["check", "diff", "plan"])
def test_check_diff_plan_load_no_pulumi_no_lab(tmp_path: Path, command: str) -> None:
    """Each asks a loopback address nothing answers on (its checks error, exit 1 or 2)."""
    args = ["--stack", "online", "--nameserver", f"{ADDRESS}:9", "--timeout", "0.2"]
    code, modules = loaded(tmp_path, command, *args, *(["--only", "spf"] if command == "check" else []))
    assert code in (1, 2)
    assert not prefixed(modules, *PULUMI, "mailstack.lab", "mailstack.providers", "mailstack.gateway")
    assert not prefixed(modules, "OpenSSL")  # pyOpenSSL only when a STARTTLS probe runs
    if command == "check":
        assert "mailstack.checks.groups.spf" in modules  # it did run the checks


def test_lab_loads_no_pulumi(tmp_path: Path) -> None:
    """The lab needs the lab, never Pulumi (``lab status`` reads its state: none here)."""
    code, modules = loaded(tmp_path, "lab", "status", "--state-dir", str(tmp_path / "no-lab"), "--namespace", "ms14-none")
    assert code in (0, 1, 2)
    assert "mailstack.cli.lab" in modules
    assert not prefixed(modules, *PULUMI, "mailstack.providers")


def test_check_help_loads_no_check_group(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "check", "--help")
    assert code == 0
    assert not prefixed(modules, *PULUMI, "mailstack.lab", "mailstack.checks.groups", "mailstack.checks.engine", "dns.resolver")
    # The planner (and the DKIM rotation's CLI module that loads it) only when a run needs it.
    assert not prefixed(modules, "mailstack.plan", "mailstack.cli.rotation")


def test_every_command_is_listed_with_its_own_summary() -> None:
    """The lazy --help lists each command with the summary its module registers."""
    import argparse

    from mailstack.cli import main

    parser = main.build_parser()  # every module, complete
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {choice.dest: choice.help for choice in subparsers._choices_actions}
    assert registered == {name: summary for name, (_, summary) in main.COMMANDS.items()}
