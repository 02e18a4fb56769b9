"""The lab's state directory: what runs (PIDs), and each stack's own keys and files.

Layout::

    <state dir>/state.json            namespace, stack file, seed zones, every started process by role
    <state dir>/stacks/<stack id>/    one directory per stack file (its name and a hash of
                                      its path), never shared:
        secrets/                      0700 root: tsig.secret, odoo.password, imap.password, the gateway's
                                      DKIM key (dkim-<selector>.private), the simulated third
                                      parties' keys, the lab CA's key
        ca.pem                        the lab CA's certificate (public)
        records.json                  the journal of the records mailstack owns
                                      (``mailstack.lab.provision``; no secret)
        bind/ gateway<n>/ receiver/ imap/ odoo/ services/ mta-sts/   one per role

A stack's directory is its own: ``lab up`` on another stack file starts from that
stack's keys, certificates and queues, never from the previous one's (a certificate
for ``mx1.acme.test`` must not greet as another stack's gateway). Keys are kept across
``down``/``up`` (the published DKIM key stays the same); queues are not (``lab down``
empties them, so no old mail reaches the next lab).

Files holding mail, logs, databases or secrets are 0600 in 0700 directories owned by
the role that uses them; the state and stack directories themselves are 0711 so the
service users can reach their own directory and list nothing.

Processes are stopped by PID only, and only while ``/proc/<pid>/cmdline`` still
mentions their marker, so a recycled PID is never signalled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mailstack.lab.tls import Authority

#: Traversable, not listable: service users reach their role directory below.
TRAVERSE_MODE = 0o711
PRIVATE_MODE = 0o700
_LOCK = threading.Lock()


def private_directories(path: Path) -> list[Path]:
    """``mkdir -p`` whose every created directory is 0700 whatever the umask (mkdir's
    ``mode`` only narrows the umask's result, and ``parents=True`` ignores it); the
    directories it created, outermost first."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        os.chmod(directory, PRIVATE_MODE)
    return list(reversed(missing))


def write_secret(path: Path, text: str | bytes, *, owner: str | None = None) -> None:
    """Create or replace a file readable by its owner only (never briefly wider), in
    directories created 0700; ``owner`` hands it to a service user."""
    private_directories(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode("ascii") if isinstance(text, str) else text)
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(temporary, entry.pw_uid, entry.pw_gid)
    os.replace(temporary, path)


def private_dir(path: Path, *, owner: str | None = None, group: int | None = None, mode: int = PRIVATE_MODE) -> Path:
    """A directory (created if missing) with exactly ``mode``, owned by ``owner``."""
    path.mkdir(parents=True, exist_ok=True)
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid if group is None else group)
    os.chmod(path, mode)
    return path


def stack_id(stack_file: Path) -> str:
    """The directory name of a stack's state: its stack name and a hash of its path
    (two checkouts' ``Pulumi.lab.yaml`` do not share state)."""
    resolved = stack_file.resolve()
    name = resolved.name.removeprefix("Pulumi.").removesuffix(".yaml").removesuffix(".yml") or "stack"
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:6]
    return f"{name[:12]}-{digest}"  # short: unix socket paths below it are limited to 107 bytes


def stack_dir(root: Path, stack_file: Path) -> Path:
    """A stack's own directory below the state directory ``root``, whether or not that
    stack's lab is the one up (``lab up`` reads a stack's DKIM rotation state before
    the lab is prepared)."""
    return root / "stacks" / stack_id(stack_file)


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

    def signal(self, number: int) -> bool:
        """Send ``number`` while it is still ours; False when it is gone."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, number)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float) -> bool:
        """Wait until it exits (reaping it if it is our child); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.alive():
            _reap(self.pid)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        _reap(self.pid)
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, wait, SIGKILL if needed; True when it had been running."""
        if not self.signal(signal.SIGTERM):
            return False
        if not self.wait(timeout):
            self.signal(signal.SIGKILL)
            self.wait(30)
        return True


def _reap(pid: int) -> None:
    """Collect our own exited child (no-op for processes started by another run)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass
class LabState:
    """The state directory of one lab host and the stack it currently runs."""

    root: Path
    namespace: str = ""
    stack_file: str = ""
    processes: list[Process] = field(default_factory=list)
    #: The seed zones the lab was brought up with (``path sha256`` each).
    seeds: list[str] = field(default_factory=list)
    #: ``lab up --dnssec``: BIND signs every zone, the gateways get TLSA (DANE).
    dnssec: bool = False
    #: The missing parents ``prepare`` created (``open_to_roles`` opens them too).
    _created: list[Path] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def stack_root(self) -> Path:
        """The current stack's own directory (see the module docstring)."""
        if not self.stack_file:
            raise ValueError("no stack recorded in this state directory")
        return stack_dir(self.root, Path(self.stack_file))

    @property
    def secrets(self) -> Path:
        return self.stack_root / "secrets"

    def role_dir(self, role: str) -> Path:
        """A role's directory below the stack's: made 0711 (reachable, not listable)
        unless the role has made it its own (``private_dir``)."""
        path = self.stack_root / role
        try:
            path.mkdir(parents=True)
        except FileExistsError:  # made before, or by another role starting at once
            return path
        os.chmod(path, TRAVERSE_MODE)
        return path

    def prepare(self) -> None:
        """Create the state directory, root-only (0700, and so is every parent it
        creates); with a stack, its directory and ``secrets/`` below it."""
        self._created = private_directories(self.root)
        os.chmod(self.root, PRIVATE_MODE)
        if self.stack_file:
            for directory in (self.root / "stacks", self.stack_root):
                directory.mkdir(exist_ok=True)
                os.chmod(directory, PRIVATE_MODE)
            private_dir(self.secrets)

    def open_to_roles(self) -> None:
        """Let the service users (postfix, opendkim, the mailgate's user, ...) reach their
        role directory: the state, ``stacks/`` and stack directories become 0711 —
        traversable, not listable; everything worth hiding is in 0700 directories below.
        So do the parents ``prepare`` created (``--state-dir /var/lib/a/lab`` with no
        ``a``): a 0700 parent would keep every service user out."""
        for directory in (*self._created, self.root, self.root / "stacks", self.stack_root):
            os.chmod(directory, TRAVERSE_MODE)

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
            state.dnssec = bool(data.get("dnssec", False))
        return state

    def save(self) -> None:
        data: dict[str, Any] = {
            "namespace": self.namespace,
            "stack_file": self.stack_file,
            "processes": [{"role": p.role, "pid": p.pid, "marker": p.marker} for p in self.processes],
            "seeds": self.seeds,
            "dnssec": self.dnssec,
        }
        temporary = self.root / f".state.json.{os.getpid()}.{threading.get_ident()}.tmp"
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self.state_file)

    def record(self, role: str, pid: int, marker: str | None = None) -> None:
        """Remember a started process (saved at once: a crash later still finds it).
        Roles start concurrently, so this is serialised."""
        with _LOCK:
            self.processes = [p for p in self.processes if p.role != role]
            self.processes.append(Process(role, pid, marker or str(self.root)))
            self.save()

    def forget(self) -> None:
        self.processes = []
        if self.state_file.exists():
            self.save()

    # -- secrets and keys, generated once per stack ------------------------------------

    def _secret(self, name: str, generate: Callable[[], str]) -> str:
        path = self.secrets / name
        with _LOCK:
            if not path.exists():
                write_secret(path, generate())
        return path.read_text(encoding="ascii").strip()

    def tsig_secret(self) -> str:
        return self._secret("tsig.secret", lambda: base64.b64encode(os.urandom(32)).decode())

    def odoo_password(self) -> str:
        return self._secret("odoo.password", lambda: base64.urlsafe_b64encode(os.urandom(18)).decode())

    def smtp_auth_password(self) -> str:
        """Odoo's SMTP AUTH password at the gateways (``gateway.smtpAuth``)."""
        return self._secret("smtp-auth.password", lambda: base64.urlsafe_b64encode(os.urandom(18)).decode())

    def imap_password(self) -> str:
        """The mailbox's IMAP password (``mailstack:imapPassword`` of the lab): Dovecot's
        user, Odoo's incoming server and the ``imap`` checks share it."""
        return self._secret("imap.password", lambda: base64.urlsafe_b64encode(os.urandom(18)).decode())

    def private_key(self, name: str, bits: int = 2048) -> str:
        """A lab RSA private key (PEM, PKCS#8) kept as ``secrets/<name>.private``."""

        def generate() -> str:
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()

        return self._secret(f"{name}.private", generate) + "\n"

    def key_path(self, name: str) -> Path:
        """Where ``private_key(name)`` is kept."""
        return self.secrets / f"{name}.private"

    def dkim_private_key(self, selector: str, bits: int) -> str:
        """The lab's gateway DKIM private key for a selector, generated on first use."""
        return self.private_key(f"dkim-{selector}", bits)

    def gateway_tls_key(self) -> str:
        """The gateways' TLS key (P-256, PEM), kept so their TLSA digest stays valid
        across restarts (``lab up --dnssec`` publishes it, ``mailstack.rules.dane``)."""
        def generate() -> str:
            key = ec.generate_private_key(ec.SECP256R1())
            return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        return self._secret("gateway-tls.key", generate) + "\n"

    @property
    def trust_anchor_file(self) -> Path:
        """DS records of the lab's signed zones (``lab up --dnssec``), for ``lab check``."""
        return self.stack_root / "trust-anchors.txt"

    def authority(self) -> Authority:
        """The stack's lab CA, made on first use (its key in ``secrets/``)."""
        cert_path, key_path = self.stack_root / "ca.pem", self.secrets / "ca.key"
        with _LOCK:
            if not (cert_path.exists() and key_path.exists()):
                ca = Authority.create(f"mailstack lab CA ({stack_id(Path(self.stack_file))})")
                write_secret(key_path, ca.key_pem)
                cert_path.write_bytes(ca.cert_pem)
                cert_path.chmod(0o644)
        return Authority(cert_path.read_bytes(), key_path.read_bytes())

    @property
    def ca_file(self) -> Path:
        return self.stack_root / "ca.pem"

    @staticmethod
    def public_key_pem(private_pem: str) -> str:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @staticmethod
    def public_key_b64(private_pem: str) -> str:
        """The base64 DER SubjectPublicKeyInfo: a DKIM record's ``p=`` value."""
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()
