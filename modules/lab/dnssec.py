"""DNSSEC for the lab's BIND: the signing policy, keys made before named starts, and
zones signed offline for the broken cases (bad and expired signatures).

named signs a zone with ``dnssec-policy`` (inline for static zones, on update for
dynamic ones). Its key is generated here first (``dnssec-keygen -k POLICY -l
named.conf``; named adopts it), so the DS for the parent — or a trust-anchor file for
``mailstack check --trust-anchor`` — is known before the server runs, and every zone
can be written in one go. ``sign_offline`` uses ``dnssec-signzone`` with explicit
inception and expiration times (``-s``/``-e``), which dnssec-policy cannot be made to
produce: an already expired zone, served as it is by a plain ``type primary``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from mailstack.core.errors import MailstackError
from mailstack.lab.binaries import binary

POLICY_NAME = "mailstack-lab"
#: A CSK with P-256 (RFC 8624 recommends algorithm 13) and short timers: a lab zone
#: is used at once; rollover timing does not matter here. ``max-zone-ttl`` is a year:
#: named refuses to load a policy zone holding a longer TTL, and a seed zone (an
#: export of a real one) may hold day- or week-long TTLs.
POLICY = f"""dnssec-policy "{POLICY_NAME}" {{
  keys {{ csk lifetime unlimited algorithm ecdsap256sha256; }};
  dnskey-ttl 60;
  max-zone-ttl 365d;
  publish-safety 1m;
  retire-safety 1m;
  purge-keys 1h;
  zone-propagation-delay 10s;
  parent-ds-ttl 60;
  parent-propagation-delay 10s;
  signatures-refresh 5d;
  signatures-validity 14d;
  signatures-validity-dnskey 14d;
}};"""


def _run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=60)
    if result.returncode:
        raise MailstackError(f"{Path(command[0]).name}: {(result.stderr or result.stdout).strip()[-1000:]}")
    return result.stdout


def _ds(key_files: list[Path]) -> list[str]:
    return [line for key in key_files for line in _run([binary("dnssec-dsfromkey"), "-a", "SHA-256", str(key)]).splitlines() if line.strip()]


def policy_ds(key_dir: Path, origin: str, conf: Path) -> list[str]:
    """The DS lines of ``origin``'s policy key in ``key_dir``, the key made when missing."""
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = sorted(key_dir.glob(f"K{origin}.+013+*.key"))
    if not keys:
        _run([binary("dnssec-keygen"), "-q", "-K", str(key_dir), "-k", POLICY_NAME, "-l", str(conf), origin])
        keys = sorted(key_dir.glob(f"K{origin}.+013+*.key"))
    return _ds(keys)


def dnskey_lines(key_dir: Path, origin: str) -> list[str]:
    """The DNSKEY record(s) of ``origin``'s keys (trust-anchor syntax)."""
    return [line for key in sorted(key_dir.glob(f"K{origin}.+013+*.key"))
            for line in key.read_text(encoding="ascii").splitlines() if line.strip() and not line.startswith(";")]


def serves_signed(address: str, port: int, origin: str, netns: str | None = None) -> bool:
    """True when the server answers ``origin`` SOA with an RRSIG over it."""
    command = [binary("dig"), "+norec", "+dnssec", "+time=1", "+tries=1", "-p", str(port), f"@{address}", origin, "SOA"]
    if netns:
        command = [binary("ip"), "netns", "exec", netns, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    return any(line.split()[3:5] == ["RRSIG", "SOA"] for line in result.stdout.splitlines() if not line.startswith(";") and len(line.split()) > 4)


def sign_offline(
    workdir: Path,
    origin: str,
    text: str,
    *,
    inception: str | None = None,
    expiration: str | None = None,
    tamper: Callable[[str], str] | None = None,
    nsec3: tuple[str, ...] = (),
) -> tuple[str, list[str]]:
    """(signed zone text, DS lines) of ``text`` signed with a new KSK and ZSK.

    ``inception``/``expiration`` (YYYYMMDDHHMMSS) sign in the past — the keys are then
    dated before ``inception`` and the post-signing check, which judges by "now", is
    skipped. ``tamper`` edits the signed text (a signature that no longer verifies).
    ``nsec3``: dnssec-signzone's NSEC3 arguments (``-3 SALT -H ITERATIONS [-A]``)."""
    directory = workdir / f"offline-{origin}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = directory / f"{origin}.zone"
    source.write_text(text, encoding="ascii")
    dated = ["-P", "20000101000000", "-A", "20000101000000"] if inception else []
    made = []
    for flags in (["-f", "KSK"], []):
        made.append(_run([binary("dnssec-keygen"), "-q", "-K", str(directory), "-a", "ECDSAP256SHA256", *dated, *flags, origin]).strip())
    signed = directory / f"{origin}.signed"
    times = (["-P", "-s", inception] if inception else []) + (["-e", expiration] if expiration else [])
    _run([binary("dnssec-signzone"), "-q", "-S", "-K", str(directory), "-d", str(directory), "-o", origin, "-f", str(signed), *times, *nsec3, str(source)])
    result = signed.read_text(encoding="ascii")
    return (tamper(result) if tamper else result), _ds([directory / f"{made[0]}.key"])
