"""The lab's state directory: what runs (PIDs), its secrets, and each role's files.

Layout (all root-only, 0700 directory, secrets 0600):
``state.json`` (namespace, stack file, every started process by role),
``tsig.secret``, ``odoo.password``, ``dkim/<selector>.private`` (the lab's generated
keys, kept across ``down``/``up`` so the published DKIM key stays the same),
``records.json`` (the journal of the records mailstack owns, ``mailstack.lab.provision``), and
one work directory per role (``bind/``, ``gateway/``, ``odoo/``, ``recipient/``).

Processes are stopped by PID only, and only while ``/proc/<pid>/cmdline`` still
mentions this state directory, so a recycled PID is never signalled.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def private_directories(path: Path) -> None:
    """``mkdir -p`` whose every created directory is 0700 whatever the umask (mkdir's
    ``mode`` only narrows the umask's result, and ``parents=True`` ignores it)."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o700)


def write_secret(path: Path, text: str) -> None:
    """Create or replace a file readable by its owner only (never briefly wider), in
    directories created 0700."""
    private_directories(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
    os.replace(temporary, path)


@dataclass(frozen=True, slots=True)
class Process:
    """One process the lab started: its role, PID and a marker found in its cmdline."""

    role: str
    pid: int
    marker: str

    def alive(self) -> bool:
        """Running, and still the process we started (its cmdline holds the marker)."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
            status = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        zombie = status.rsplit(")", 1)[-1].split()[0] == "Z"
        return not zombie and self.marker.encode() in cmdline

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, wait, SIGKILL if needed; True when it had been running."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            _reap(self.pid)
            time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            while self.alive():
                _reap(self.pid)
                time.sleep(0.05)
        _reap(self.pid)
        return True


def _reap(pid: int) -> None:
    """Collect our own exited child (no-op for processes started by another run)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass
class LabState:
    """The state directory of one lab."""

    root: Path
    namespace: str = ""
    stack_file: str = ""
    processes: list[Process] = field(default_factory=list)
    #: The seed zones the lab was brought up with (``path sha256`` each).
    seeds: list[str] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def role_dir(self, role: str) -> Path:
        path = self.root / role
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prepare(self) -> None:
        """Create the directory, root-only."""
        private_directories(self.root)
        os.chmod(self.root, 0o700)

    @classmethod
    def load(cls, root: Path) -> LabState:
        """The recorded state, or an empty one when the lab never ran here."""
        state = cls(root)
        if state.state_file.exists():
            data = json.loads(state.state_file.read_text(encoding="utf-8"))
            state.namespace = data.get("namespace", "")
            state.stack_file = data.get("stack_file", "")
            state.processes = [Process(p["role"], int(p["pid"]), p["marker"]) for p in data.get("processes", [])]
            state.seeds = [str(s) for s in data.get("seeds", [])]
        return state

    def save(self) -> None:
        data: dict[str, Any] = {
            "namespace": self.namespace,
            "stack_file": self.stack_file,
            "processes": [{"role": p.role, "pid": p.pid, "marker": p.marker} for p in self.processes],
            "seeds": self.seeds,
        }
        temporary = self.root / ".state.json.tmp"
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self.state_file)

    def record(self, role: str, pid: int, marker: str | None = None) -> None:
        """Remember a started process (saved at once: a crash later still finds it)."""
        self.processes = [p for p in self.processes if p.role != role]
        self.processes.append(Process(role, pid, marker or str(self.root)))
        self.save()

    def forget(self) -> None:
        self.processes = []
        if self.state_file.exists():
            self.save()

    # -- secrets and keys, generated once per state directory ---------------------

    def _secret(self, name: str, generate: Any) -> str:
        path = self.root / name
        if not path.exists():
            write_secret(path, generate())
        return path.read_text(encoding="ascii").strip()

    def tsig_secret(self) -> str:
        return self._secret("tsig.secret", lambda: base64.b64encode(os.urandom(32)).decode())

    def odoo_password(self) -> str:
        return self._secret("odoo.password", lambda: base64.urlsafe_b64encode(os.urandom(18)).decode())

    def dkim_private_key(self, selector: str, bits: int) -> str:
        """The lab's DKIM private key (PEM, PKCS#8), generated on first use."""

        def generate() -> str:
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()

        return self._secret(f"dkim/{selector}.private", generate) + "\n"

    @staticmethod
    def public_key_pem(private_pem: str) -> str:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
