"""The installed package: one import package ``mailstack`` that works outside a checkout.

``pip wheel .`` is built and installed, non-editable, into a fresh virtual environment
(its dependencies borrowed from the test environment through a path file, the package
itself only from the wheel), then every command runs from a directory that is not the
project: ``records``/``render``/``check``/``diff`` find their templates and stacks, and
``lab up``/``status``/``down`` run the lab's servers from the installed code. The
import contracts (``lint-imports``) are shown to catch a forbidden import.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstack.lab import netns
from tests import project
from tests.servers import require_binary, require_root

ROOT = project.ROOT


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, a fresh venv with only the wheel's mailstack installed)."""
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(work / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = list((work / "dist").glob("mailstack-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies come from the test environment; its mailstack does not: the test
    # environment's site-packages is only a path entry here, so its editable-install
    # hooks (.pth files) are not run and cannot shadow the wheel.
    (purelib / "_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    yield wheel, venv


def test_the_wheel_holds_one_package_with_its_templates(wheel_env: tuple[Path, Path]) -> None:
    wheel, _ = wheel_env
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"mailstack"}, "no top-level modules/ or checks/ package is installed"
    assert "mailstack/templates/postfix/main.cf.j2" in names
    assert "mailstack/checks/groups/spf.py" in names and "mailstack/py.typed" in names
    assert not any(name.startswith("mailstack/stacks/") for name in names), "stacks belong to the project, not the code"


def installed(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / "mailstack"), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_the_installed_code_is_the_wheel_s(wheel_env: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = wheel_env
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import mailstack.gateway.render as r; print(r.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert found.startswith(str(venv)) and str(ROOT) not in found


def test_records_render_check_diff_from_another_directory(wheel_env: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = wheel_env
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    online = str(project.stack_path("online"))

    records = installed(venv, elsewhere, "records", "--stack-file", online, "--format", "zone")
    assert records.returncode == 0 and "_dmarc.example.com." in records.stdout, records.stderr

    by_name = installed(venv, elsewhere, "records", "--project-dir", str(ROOT), "--stack", "onpremise")
    assert by_name.returncode == 0 and "mx1.example.net" in by_name.stdout, by_name.stderr
    lost = installed(venv, elsewhere, "records", "--stack", "onpremise")
    assert lost.returncode == 2 and "no Pulumi.yaml" in lost.stderr and "Traceback" not in lost.stderr

    out = tmp_path / "rendered"
    rendered = installed(venv, elsewhere, "render", "--project-dir", str(ROOT), "--stack", "onpremise", "--out", str(out))
    assert rendered.returncode == 0, rendered.stderr
    assert "relay_domains = example.net" in (out / "mx1.example.net" / "postfix" / "main.cf").read_text()

    # check and diff run (nothing answers on the discard port: errors, never a crash)
    checked = installed(venv, elsewhere, "check", "--stack-file", online, "--nameserver", "127.0.0.1:9", "--timeout", "0.2", "--only", "spf")
    assert checked.returncode == 1 and "error" in checked.stdout and "Traceback" not in checked.stderr
    diffed = installed(venv, elsewhere, "diff", "--stack-file", online, "--nameserver", "127.0.0.1:9", "--timeout", "0.2")
    assert diffed.returncode == 2 and "Traceback" not in diffed.stderr


def test_the_lab_runs_from_the_wheel(wheel_env: tuple[Path, Path], tmp_path: Path) -> None:
    require_root()
    for binary in ("named", "postfix", "opendkim"):
        require_binary(binary)
    _, venv = wheel_env
    namespace = f"mspkg{uuid.uuid4().hex[:6]}"
    state_dir = Path("/var/lib/mailstack-lab-tests") / uuid.uuid4().hex[:8]
    state_dir.parent.mkdir(mode=0o755, exist_ok=True)
    common = ("--state-dir", str(state_dir), "--namespace", namespace)
    try:
        up = installed(venv, tmp_path, "lab", "up", "--stack-file", str(project.stack_path("lab")), *common)
        assert up.returncode == 0, up.stdout + up.stderr
        status = installed(venv, tmp_path, "lab", "status", *common)
        assert status.returncode == 0 and "NOT RUNNING" not in status.stdout, status.stdout + status.stderr
    finally:
        down = installed(venv, tmp_path, "lab", "down", "--purge", *common)
        assert down.returncode == 0, down.stderr
        assert not netns.exists(namespace)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_the_import_contracts_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The layers contract is not vacuous: a rule module importing the plan breaks it."""
    import mailstack
    import mailstack.checks

    tree = tmp_path / "tree"
    shutil.copytree(Path(mailstack.__file__).resolve().parent, tree / "mailstack")
    shutil.copytree(Path(mailstack.checks.__file__).resolve().parent, tree / "mailstack" / "checks", dirs_exist_ok=True)
    config = ROOT / "pyproject.toml"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    kept = subprocess.run([lint, "--config", str(config)], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    spf = tree / "mailstack" / "rules" / "spf.py"
    spf.write_text(spf.read_text() + "\nfrom mailstack.plan import build  # noqa: E402,F401\n")
    broken = subprocess.run([lint, "--config", str(config)], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert broken.returncode == 1 and "mailstack.rules.spf -> mailstack.plan" in broken.stdout, broken.stdout
