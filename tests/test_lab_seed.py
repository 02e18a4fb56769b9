"""``mailstack lab up --seed-zone FILE`` through the real CLI: seeds that cannot be used
are refused before anything starts (exit 2, file, line and reason), and a plan that
conflicts with the seeded zone exits 2 leaving the lab's BIND up with the zone exactly
as seeded (read back with dig inside the namespace), nothing of the plan written.

The coexisting case — a lab brought up on the shipped zone, every check green on top of
it — is ``tests/test_lab.py`` (its lab is seeded with ``tests/zones/acme.test.zone``).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import dns.zone
import pytest

from mailstack.cli import main as cli
from mailstack.lab import binaries, netns
from mailstack.lab.state import LabState
from tests.servers import require_binary, require_root

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SEED = Path(__file__).parent / "zones" / "acme.test.zone"
OLD_SPF = '"v=spf1 include:_spf.google.com ~all"'


def lab_up(state_dir: Path, namespace: str, *seeds: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mailstack.cli", "lab", "up", "--state-dir", str(state_dir), "--namespace", namespace]
    argv += [f"--seed-zone={seed}" for seed in seeds]
    return subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def seed_file(tmp_path: Path, name: str, *lines: str, base: str | None = None) -> Path:
    path = tmp_path / name
    path.write_text((SEED.read_text(encoding="utf-8") if base is None else base) + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


BASE_LINES = len(SEED.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("lines, base, line, reason", [
    (["acme.test. 1 IN FOO bar"], None, BASE_LINES + 1, "unknown rdatatype 'FOO'"),
    (['shop.acme.test. 1 IN TXT "x"'], None, BASE_LINES + 1, "a CNAME beside other records"),
    (["mx1.acme.test. 300 IN CNAME elsewhere.example."], None, BASE_LINES + 1,
     "mx1.acme.test is a CNAME to elsewhere.example in the seed zone, and the stack plans A '127.0.40.10' there"),
    ([], "$INCLUDE /etc/passwd\n" + SEED.read_text(encoding="utf-8"), 1, "zone file directive '$INCLUDE' is not allowed"),
    ([], "$ORIGIN other.test.\n@ 1 IN SOA ns. h. 1 1 1 1 1\n@ 1 IN NS ns.example.\n", 1,
     "the zone is other.test, but the stack writes to acme.test"),
    ([], "@ 1 IN A 192.0.2.1\n", None, "cannot tell the zone's origin"),
])
def test_a_seed_that_cannot_be_used_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], base: str | None, line: int | None, reason: str
) -> None:
    path = seed_file(tmp_path, "seed.zone", *lines, base=base)
    state_dir, namespace = tmp_path / "state", f"ms12{uuid.uuid4().hex[:6]}"
    code = cli.main(["lab", "up", "--state-dir", str(state_dir), "--namespace", namespace, f"--seed-zone={path}"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    where = f"--seed-zone {path}:{line}: " if line else f"--seed-zone {path}: "
    assert stderr.startswith(f"error: {where}") and reason in stderr, stderr
    assert not state_dir.exists() and not netns.exists(namespace), "nothing was created"


def test_a_missing_seed_file_is_named_by_the_installed_command() -> None:
    result = lab_up(Path("/nonexistent-state"), "ms12none", Path("/nonexistent/zone.db"))
    assert result.returncode == 2 and "--seed-zone /nonexistent/zone.db: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def dig_axfr(namespace: str, secret_file: Path) -> dns.zone.Zone:
    """The zone as the lab's BIND transfers it, by dig inside the namespace (the key from a file, never argv)."""
    key_file = secret_file.with_name("dig.key")
    key_file.write_text(f'key "mailstack-lab" {{ algorithm hmac-sha256; secret "{secret_file.read_text().strip()}"; }};\n')
    key_file.chmod(0o600)
    result = subprocess.run([binaries.binary("ip"), "netns", "exec", namespace, binaries.binary("dig"), "-k", str(key_file),
                             "+norecurse", "@127.0.40.2", "acme.test", "AXFR"], capture_output=True, text=True, timeout=30)
    key_file.unlink()
    assert result.returncode == 0, result.stderr
    return dns.zone.from_text(result.stdout, origin="acme.test.", relativize=False, check_origin=False)


def test_a_conflicting_old_spf_leaves_bind_up_with_the_zone_exactly_as_seeded(tmp_path: Path) -> None:
    require_root()
    require_binary("named")
    require_binary("dig")
    path = seed_file(tmp_path, "conflict.zone", f"acme.test.\t1\tIN\tTXT\t{OLD_SPF}")
    state_dir = Path("/var/lib/mailstack-lab-tests") / f"ms12{uuid.uuid4().hex[:8]}"
    state_dir.parent.mkdir(mode=0o755, exist_ok=True)
    namespace = f"ms12{uuid.uuid4().hex[:6]}"
    try:
        result = lab_up(state_dir, namespace, path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"acme.test TXT 'v=spf1 include:_spf.google.com ~all' is not mailstack's" in result.stderr
        assert "mailstack:dns.adopt {txt-acme.test:" in result.stderr and "or remove it from the zone" in result.stderr
        assert "left up" in result.stderr and "nothing of the plan written" in result.stderr
        roles = {p.role: p.alive() for p in LabState.load(state_dir).processes}
        assert roles == {"bind": True}, "BIND stays up for inspection; nothing else was started"
        served = dig_axfr(namespace, state_dir / "tsig.secret")
        seeded = dns.zone.from_text(path.read_text().replace("acme.test\t3600\tIN\tSOA", "@\t3600\tIN\tSOA"), origin="acme.test.",
                                    relativize=False)
        assert {(n, r.rdtype, r.ttl, frozenset(r)) for n, r in served.iterate_rdatasets()} == \
               {(n, r.rdtype, r.ttl, frozenset(r)) for n, r in seeded.iterate_rdatasets()}, "the zone exactly as seeded"
    finally:
        down = subprocess.run([sys.executable, "-m", "mailstack.cli", "lab", "down", "--purge", "--state-dir", str(state_dir),
                               "--namespace", namespace], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
    assert not netns.exists(namespace)
