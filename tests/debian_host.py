"""A real Debian 12 host for deploy tests: a cached root booted with systemd-nspawn.

``cached_root()`` builds, once, a minimal Debian 12 (``debootstrap --variant=minbase
bookworm`` from the configured mirror, then systemd, dbus and openssh-server) under a
root-only cache directory, ``/var/cache/mailstack-tests`` (``MAILSTACK_TEST_CACHE``
moves it). The directory of a root is named after a hash of the recipe below, so a
changed recipe builds a new root and older ones are removed; ``rm -rf
/var/cache/mailstack-tests`` (with no test running) clears the cache, the next test run
builds it again (about a minute).

``DebianHost.boot()`` puts an overlay on the cached root (the root itself is never
written), writes the per-run parts into it (host name, resolver, a fresh ed25519 host key
and the authorized key of a fresh client key: nothing secret is cached), and boots it
with ``systemd-nspawn --register=no --keep-unit --boot`` in a network namespace the
caller made (``tests.lab_network``). Packages come from the mirror through
``tests/apt_proxy.py``, which listens on 127.0.0.1:3142 inside the host's namespace.
``stop()`` halts the container (SIGTERM to nspawn, whose kill signal makes the
container's systemd shut down; SIGKILL to the container's init as the fallback), stops
the proxy, unmounts the overlay and removes the run directory: nothing of the machine's
own ``/etc`` is touched, nothing keeps running or mounted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests import lab_network

CACHE = Path(os.environ.get("MAILSTACK_TEST_CACHE", "/var/cache/mailstack-tests"))
SUITE = "bookworm"
MIRROR = os.environ.get("MAILSTACK_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("MAILSTACK_TEST_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
#: What a minimal server image has beyond minbase: an init, a bus, and sshd (with sftp-server).
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server")
PROXY_PORT = 3142
SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
APT_PROXY = Path(__file__).with_name("apt_proxy.py")

FILES = {
    "etc/apt/sources.list": (
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
    ),
    # The host's namespace has loopback and the lab cable only: apt reaches the mirror
    # through the proxy listening inside it. Retries at once (the proxy answers at once).
    "etc/apt/apt.conf.d/01mailstack-test-proxy": (
        'Acquire::http::Proxy "http://127.0.0.1:%d/";\nAcquire::Retries "2";\nAcquire::Retries::Delay "false";\n' % PROXY_PORT
    ),
    "etc/ssh/sshd_config.d/10-mailstack-test.conf": (
        "# mailstack test host: key-only root login; the host key is made per boot.\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUseDNS no\nX11Forwarding no\n"
    ),
    "etc/default/locale": "LANG=C.UTF-8\n",  # minbase has none: pam_env warns at every login
    "etc/resolv.conf": "# written per boot: the lab's name server\n",
}
#: Background jobs that would take the dpkg lock during a test, or touch the clock.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
          "fstrim.timer", "e2scrub_reap.service", "systemd-timesyncd.service")
RECIPE_VERSION = 1
BUILD_STEP_TIMEOUT = 1200  # seconds; debootstrap takes ~25 s and the packages ~15 s here


class HostError(RuntimeError):
    """The test host could not be built, booted or stopped."""


def recipe_id() -> str:
    """A hash of everything the cached root is made from."""
    recipe = {"version": RECIPE_VERSION, "suite": SUITE, "mirror": MIRROR, "security": SECURITY_MIRROR,
              "packages": BASE_PACKAGES, "files": FILES, "masked": MASKED}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _run(command: list[str], log: Path, what: str) -> None:
    with open(log, "ab") as output:
        try:
            result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={"PATH": SBIN_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
                                    timeout=BUILD_STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise HostError(f"{what} still running after {BUILD_STEP_TIMEOUT} s, see {log}") from None
    if result.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise HostError(f"{what} failed (exit {result.returncode}), see {log}:\n" + "\n".join(tail))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_root() -> Path:
    """The cached Debian root, built on first use (one builder at a time)."""
    CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(CACHE, 0o700)
    directory = CACHE / f"{SUITE}-{recipe_id()}"
    if not (directory / "complete").exists():
        with _locked(CACHE / "build.lock"):
            if not (directory / "complete").exists():
                _build(directory)
    return directory / "root"


def _build(directory: Path) -> None:
    started = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    root, log = directory / "root", directory / "build.log"
    _run(["debootstrap", "--variant=minbase", SUITE, str(root), MIRROR], log, "debootstrap")
    bootstrapped = time.monotonic()
    guard = root / "usr/sbin/policy-rc.d"  # no service starts inside the chroot
    guard.write_text("#!/bin/sh\nexit 101\n")
    guard.chmod(0o755)
    for relative, text in FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    (root / "etc/apt/apt.conf.d/01mailstack-test-proxy").rename(root / "etc/apt/01mailstack-test-proxy.off")
    (root / "etc/resolv.conf").write_text(Path("/etc/resolv.conf").read_text())  # the build's own resolver
    _run(["chroot", str(root), "sh", "-c", "apt-get update -q && apt-get install -y -q " + " ".join(BASE_PACKAGES)
          + " && apt-get -y -q dist-upgrade && apt-get clean"], log, "installing the base packages")
    guard.unlink()
    (root / "etc/apt/01mailstack-test-proxy.off").rename(root / "etc/apt/apt.conf.d/01mailstack-test-proxy")
    (root / "etc/resolv.conf").write_text(FILES["etc/resolv.conf"])
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # made per boot, never cached
    (root / "etc/machine-id").write_text("")  # a fresh id per boot (and no stale dbus copy)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for unit in MASKED:
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    for wants in (root / "etc/systemd/system").glob("*.wants/*"):
        if wants.name in MASKED:
            wants.unlink()
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    size = subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True).stdout.split()[0]
    (directory / "complete").write_text(json.dumps({
        "debootstrap_s": round(bootstrapped - started, 1), "total_s": round(time.monotonic() - started, 1), "size_mb": int(size),
    }) + "\n")
    for other in CACHE.glob(f"{SUITE}-*"):
        if other != directory and not _in_use(other):
            shutil.rmtree(other, ignore_errors=True)


def _in_use(directory: Path) -> bool:
    return str(directory) in Path("/proc/self/mountinfo").read_text()


def build_report() -> dict[str, float]:
    """The timings of the cached root's build (what a fresh CI machine spends once)."""
    return dict(json.loads((cached_root().parent / "complete").read_text()))


def ssh_keypair() -> tuple[str, str]:
    """A fresh ed25519 key: (private key in OpenSSH format, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private.decode(), public.decode()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_gone(process: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        process.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


@dataclass
class DebianHost:
    """One booted test host: ``hostname`` at ``address`` (its namespace ``netns``)."""

    hostname: str
    address: str
    netns: str
    nameserver: str
    #: The public key line (``ssh-ed25519 AAAA...``) root accepts.
    authorized_key: str
    #: Namespaces of this run that a later test process removes if this one died.
    owned_netns: tuple[str, ...] = ()
    run_dir: Path = field(init=False)
    #: The host's public key line, made at boot: pin it.
    host_key: str = field(init=False, default="")
    nspawn: subprocess.Popen[bytes] | None = field(init=False, default=None)
    proxy: subprocess.Popen[bytes] | None = field(init=False, default=None)
    boot_seconds: float = field(init=False, default=0.0)

    @property
    def merged(self) -> Path:
        return self.run_dir / "merged"

    def boot(self, timeout: float = 60.0) -> None:
        """Mount the overlay, write the per-run files, boot, wait until sshd answers."""
        lower = cached_root()
        self.run_dir = CACHE / "runs" / self.netns
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for part in ("upper", "work", "merged"):
            (self.run_dir / part).mkdir(parents=True, mode=0o700)
        # The overlay's root takes the upper directory's mode: the host's / must be 0755
        # like the cached root's, or no service user can reach anything.
        (self.run_dir / "upper").chmod(lower.stat().st_mode & 0o7777)
        (self.run_dir / "owner").write_text(f"{os.getpid()}\n")
        (self.run_dir / "netns").write_text("".join(f"{name}\n" for name in (self.netns, *self.owned_netns)))
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={self.run_dir / 'upper'},workdir={self.run_dir / 'work'}",
                        str(self.merged)], check=True, capture_output=True, env={"PATH": SBIN_PATH})
        self._personalise()
        started = time.monotonic()
        log = open(self.run_dir / "nspawn.log", "ab")
        cgroups = _own_cgroups(self.netns)
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot", f"--machine={self.netns}",
             f"--network-namespace-path=/run/netns/{self.netns}", "--resolv-conf=off", "--timezone=off",
             "--link-journal=no", "--console=read-only", "-D", str(self.merged)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env={"PATH": SBIN_PATH},
            preexec_fn=lambda: _join_cgroups(cgroups),
        )
        log.close()
        (self.run_dir / "nspawn.pid").write_text(f"{self.nspawn.pid}\n")
        while not self._sshd_answers():
            if self.nspawn.poll() is not None:
                raise HostError(f"systemd-nspawn exited with {self.nspawn.returncode}: see {self.run_dir / 'nspawn.log'}")
            if time.monotonic() - started > timeout:
                raise HostError(f"sshd of {self.hostname} did not answer within {timeout} s")
            time.sleep(0.1)
        self.boot_seconds = time.monotonic() - started

    def _personalise(self) -> None:
        root = self.merged
        short = self.hostname.split(".")[0]
        (root / "etc/hostname").write_text(short + "\n")
        (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n{self.address}\t{self.hostname} {short}\n::1\tlocalhost ip6-localhost\n")
        (root / "etc/resolv.conf").write_text(f"nameserver {self.nameserver}\noptions timeout:2 attempts:2\n")
        private, public = ssh_keypair()
        host_key = root / "etc/ssh/ssh_host_ed25519_key"
        fd = os.open(host_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(private)
        (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text(public + f" root@{short}\n")
        self.host_key = public
        keys = root / "root/.ssh/authorized_keys"
        fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.authorized_key + "\n")

    def _sshd_answers(self) -> bool:
        try:
            with lab_network.tcp_connect(self.netns, self.address, 22, timeout=1.0) as sock:
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def start_proxy(self, allow: tuple[str, ...]) -> None:
        """The apt proxy on 127.0.0.1:3142 inside the host's namespace (upstreams: ``allow``)."""
        command = [sys.executable, str(APT_PROXY), "--netns", f"/run/netns/{self.netns}", "--listen", f"127.0.0.1:{PROXY_PORT}"]
        for upstream in allow:
            command += ["--allow", upstream]
        log = open(self.run_dir / "proxy.log", "ab")
        self.proxy = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        (self.run_dir / "proxy.pid").write_text(f"{self.proxy.pid}\n")
        deadline = time.monotonic() + 10
        while True:
            try:
                lab_network.tcp_connect(self.netns, "127.0.0.1", PROXY_PORT, timeout=1.0).close()
                return
            except OSError:
                if self.proxy.poll() is not None or time.monotonic() > deadline:
                    raise HostError(f"the apt proxy did not start: see {self.run_dir / 'proxy.log'}") from None
                time.sleep(0.05)

    def stop_proxy(self) -> None:
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGTERM)
            if not _wait_gone(self.proxy, 5):
                self.proxy.kill()
                if not _wait_gone(self.proxy, 10):
                    raise HostError(f"the apt proxy of {self.hostname} (pid {self.proxy.pid}) survived SIGKILL")
        self.proxy = None

    def halt(self) -> None:
        """Ask the container to shut down (nspawn's SIGTERM → the container's systemd halts)."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        """Halt (waiting up to ``timeout``), then remove every trace of this run."""
        self.halt()
        if self.nspawn is not None and not _wait_gone(self.nspawn, timeout):
            for init in _children(self.nspawn.pid):
                os.kill(init, signal.SIGKILL)  # PID 1 of the container: the kernel kills the rest
            if not _wait_gone(self.nspawn, 10):
                self.nspawn.kill()
                if not _wait_gone(self.nspawn, 10):
                    raise HostError(f"systemd-nspawn of {self.hostname} (pid {self.nspawn.pid}) survived SIGKILL")
        self.nspawn = None
        self.stop_proxy()
        if hasattr(self, "run_dir"):
            _cleanup_run(self.run_dir)


CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def _own_cgroups(name: str) -> list[Path]:
    """A cgroup of its own for one container, in each hierarchy systemd uses.

    With ``--keep-unit`` nspawn runs the container in the cgroup it was started in, and
    the container's systemd builds its units below it. Two containers started from the
    same cgroup would share that tree and fight over it (systemd then sees no processes
    in its own units: ``Input/output error``), so each gets ``mailstack-tests/NAME``."""
    made = _cgroup_paths(name)
    for directory in made:
        directory.mkdir(parents=True, exist_ok=True)
    return made


def _cgroup_paths(name: str) -> list[Path]:
    paths: list[Path] = []
    for root in CGROUP_ROOTS:
        if (root / "cgroup.procs").exists() and not (root == Path("/sys/fs/cgroup") and paths):
            paths.append(root / _current_cgroup(root).lstrip("/") / "mailstack-tests" / name)
    return paths


def _current_cgroup(root: Path) -> str:
    name = "name=systemd" if root.name == "systemd" else ""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == name:
            return path
    return "/"


def _join_cgroups(cgroups: list[Path]) -> None:
    for directory in cgroups:
        (directory / "cgroup.procs").write_text(str(os.getpid()))


def _remove_cgroups(name: str) -> None:
    for top in _cgroup_paths(name):
        if top.is_dir():
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                directory.rmdir()
            top.rmdir()
            try:
                top.parent.rmdir()  # mailstack-tests, when no other run uses it
            except OSError:
                pass


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def _cleanup_run(run_dir: Path) -> None:
    try:
        _remove_cgroups(run_dir.name)
    except OSError:
        pass  # a process still inside: left for remove_stale_runs
    merged = run_dir / "merged"
    if str(merged) in Path("/proc/self/mountinfo").read_text():
        subprocess.run(["umount", str(merged)], capture_output=True, env={"PATH": SBIN_PATH})
    if str(merged) not in Path("/proc/self/mountinfo").read_text():
        shutil.rmtree(run_dir, ignore_errors=True)
    propagate = Path("/run/systemd/nspawn/propagate") / run_dir.name
    if propagate.is_dir() and not any(propagate.iterdir()):
        propagate.rmdir()


def _stop_stale(pid_file: Path, marker: str) -> None:
    """SIGTERM the process named in ``pid_file`` if its command line still holds ``marker``."""
    try:
        pid = int(pid_file.read_text())
        if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def remove_stale_runs() -> None:
    """Runs left by a test process that died: stop their container (only when the PID
    is still that run's nspawn), unmount, delete. Other live runs are left alone."""
    for run_dir in sorted((CACHE / "runs").glob("*")):
        try:
            owner = int((run_dir / "owner").read_text())
        except (FileNotFoundError, ValueError):
            owner = 0
        if owner and _alive(owner):
            continue
        try:
            pid = int((run_dir / "nspawn.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError):
            pid, cmdline = 0, b""
        _stop_stale(run_dir / "proxy.pid", f"/run/netns/{run_dir.name}")
        if pid and str(run_dir / "merged").encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                for init in _children(pid):
                    os.kill(init, signal.SIGKILL)
        namespaces = (run_dir / "netns").read_text().split() if (run_dir / "netns").exists() else [run_dir.name]
        _cleanup_run(run_dir)
        for name in namespaces:
            for orphan in lab_network.processes_in(name):
                os.kill(orphan, signal.SIGKILL)
            lab_network.delete(name)


