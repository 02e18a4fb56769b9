"""Run a rendered gateway for real: a private Postfix instance and its OpenDKIM milter.

The lab (``mailstack lab``), the check suite's SMTP tests and the gateway tests all run
the configuration ``mailstack.gateway.render`` produced, not a hand-written one. ``lab_layout``
gives the ``render.Layout`` that places every file in one work directory (and the
listeners on a loopback address); ``PostfixInstance`` installs the ``postfix/`` files,
points ``queue_directory``/``data_directory``/``maillog_file`` into the work directory,
runs ``postmap``, ``postfix check`` and ``postfix start`` (inside a network namespace
when given) and stops it by the master's PID. ``OpenDkim`` does the same for the
``opendkim/`` files and runs ``opendkim -f`` as a child process.

Typical use::

    layout = lab_layout(workdir, "127.0.20.10")
    files = render.render(stack, dkim_private_key_pem=pem, layout=layout)
    with OpenDkim(workdir, files, netns="msgw-1"), PostfixInstance(workdir, files, netns="msgw-1") as postfix:
        ...  # send mail to 127.0.20.10:25, then postfix.queue(), postfix.log()

The work directory must be traversable by the ``postfix``, ``opendkim`` and mailgate
users and must not lie below a world-writable directory such as /tmp (OpenDKIM's
safe-key check): ``make_workdir`` creates one under /run/mailstack-lab, mode 0755.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailstack.core.errors import MailstackError
from mailstack.gateway.layout import Layout
from mailstack.gateway.render import POSTMAP_FILES, RenderedFile, mailgate_source
from mailstack.lab import users
from mailstack.lab.binaries import binary
from mailstack.lab.process import accepts, stop_child

SYSTEM_PYTHON = "/usr/bin/python3"


class LabError(MailstackError):
    """A lab server could not be configured, checked, started or stopped."""


#: Where lab work directories live: not under /tmp, because OpenDKIM refuses a key
#: whose path crosses a world-writable directory ("key data is not secure").
WORK_ROOT = Path("/run/mailstack-lab")


def make_workdir(prefix: str = "msgw-") -> Path:
    """A fresh directory under ``WORK_ROOT`` that service users can traverse (0755);
    remove it with ``shutil.rmtree`` when done."""
    WORK_ROOT.mkdir(mode=0o755, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=WORK_ROOT))
    path.chmod(0o755)
    return path


def mailgate_python() -> str:
    """The interpreter the lab's mailgate runs with: the system Python when present (a
    pyenv or venv Python under /root is not reachable for the unprivileged mailgate
    user), else this one."""
    return SYSTEM_PYTHON if Path(SYSTEM_PYTHON).exists() else sys.executable


def runs_as(user: str, python: str | None = None) -> bool:
    """True when ``user`` can run ``python`` (what Postfix's pipe will do)."""
    try:
        result = subprocess.run([python or mailgate_python(), "-c", "pass"], user=user, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def lab_layout(workdir: Path, address: str, *, smtp_port: int = 25, submission_port: int = 587,
               milter_port: int = 8891, mailgate_user: str = users.MAILGATE_USER, aliasd_port: int = 10027,
               mailgated_port: int = 10028) -> Layout:
    """A Layout with every file under ``workdir`` and listeners on ``address``.

    The mailgate runs as ``mailgate_user`` with the system Python on a copy of
    the mailgate (``install_mailgate`` puts it there), as on a real host."""
    return Layout(
        postfix_dir=str(workdir / "postfix"),
        opendkim_dir=str(workdir / "opendkim"),
        mailstack_dir=str(workdir / "mailstack"),
        mta_sts_dir=str(workdir / "mta-sts"),
        nginx_dir=str(workdir / "nginx"),
        systemd_dir=str(workdir / "systemd"),
        maillog_file=str(workdir / "postfix.log"),
        opendkim_pidfile=str(workdir / "opendkim" / "opendkim.pid"),
        milter_host=address,
        milter_port=milter_port,
        smtp_service=f"{address}:{smtp_port}",
        submission_service=f"{address}:{submission_port}",
        inet_protocols="ipv4",
        mailgate_user=mailgate_user,
        mailgate_command=(mailgate_python(), "-I", "-S", str(workdir / "mailstack" / "mailgate.py")),
        aliasd_host=address,
        srs_host=address,
        aliasd_port=aliasd_port,
        aliasd_command=(mailgate_python(), str(workdir / "mailstack" / "aliasd.py")),
        mailgated_host=address,
        mailgated_port=mailgated_port,
        mailgated_command=(mailgate_python(), "-I", "-S", str(workdir / "mailstack" / "mailgated.py")),
    )


def write_files(files: Mapping[str, RenderedFile], workdir: Path, prefix: str) -> list[Path]:
    """Write the rendered files under ``prefix/`` into ``workdir`` with exactly their
    modes (whatever the umask)."""
    written = []
    for relative, rendered in files.items():
        if not relative.startswith(prefix + "/"):
            continue
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.parent.chmod(0o755)
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, rendered.mode)
        with os.fdopen(fd, "wb") as handle:  # bytes: CRLF (MTA-STS) stays CRLF
            handle.write(rendered.text.encode("utf-8"))
            os.fchmod(handle.fileno(), rendered.mode)
        written.append(target)
    return written


def install_mailgate(files: Mapping[str, RenderedFile], workdir: Path, password: str, *, user: str = users.MAILGATE_USER) -> Path:
    """Put the mailgate, its config and its password file (0600, owned by ``user``)
    where ``lab_layout`` points master.cf; the password file path is the one in the
    rendered mailgate.conf, so render with ``mailgate.passwordFile`` inside workdir.
    ``user`` is a user of the mailgate's own (created if missing), never ``nobody``,
    whose uid every unrelated service shares."""
    if user == users.MAILGATE_USER:
        users.ensure((user,))
    write_files(files, workdir, "mailstack")
    script = workdir / "mailstack" / "mailgate.py"
    script.write_text(mailgate_source(), encoding="utf-8")
    script.chmod(0o755)
    conf = files["mailstack/mailgate.conf"].text
    password_file = Path(next(line.split("=", 1)[1].strip() for line in conf.splitlines() if line.startswith("password_file")))
    password_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    entry = pwd.getpwnam(user)
    os.chown(password_file, entry.pw_uid, entry.pw_gid)
    return password_file


def _run(command: list[str], netns: str | None, *, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    full = [binary("ip"), "netns", "exec", netns, *command] if netns else command
    result = subprocess.run(full, capture_output=True, text=True, input=input.decode() if input else None)
    if check and result.returncode:
        raise LabError(f"{' '.join(command)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
    return result


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; raise LabError on timeout.

    Outcomes, not durations, are what tests assert: the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def can_connect(address: str, port: int, netns: str | None = None) -> bool:
    """True when a TCP connection to address:port succeeds (inside netns if given)."""
    if netns is None:
        return accepts(address, port)
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()"
    return _run([sys.executable, "-c", code], netns, check=False).returncode == 0


#: Postfix re-reads a main.cf changed within the last couple of seconds, 300 ms apart,
#: until it is older (measured: 1.8 s for each command right after writing it), in case
#: it is still being written. The lab writes its files at once, so it dates them back.
SETTLED_AGE = 10.0


def settle(config_dir: Path) -> None:
    """Date every file of a freshly written Postfix configuration ``SETTLED_AGE`` back."""
    stamp = time.time() - SETTLED_AGE
    for path in config_dir.iterdir():
        if path.is_file():
            os.utime(path, (stamp, stamp))


def postfix_command(config_dir: Path, action: str, log: Path | None = None, netns: str | None = None) -> int:
    """``postfix -c DIR <action>`` (start, which runs ``postfix check``'s fatal checks
    itself); the master's PID once it runs. Postfix reports configuration errors only
    to its log when stderr is not a terminal, so on failure ``postfix check`` runs again
    under a pty to show them."""
    started = _run([binary("postfix"), "-c", str(config_dir), action], netns, check=False)
    if started.returncode:
        shown = _run([binary("script"), "-qec", shlex.join([binary("postfix"), "-c", str(config_dir), "check"]), "/dev/null"],
                     netns, check=False)
        raise LabError(f"postfix -c {config_dir} {action}: {(started.stderr + shown.stdout).strip() or 'failed'}")
    queue = Path(_run([binary("postconf"), "-c", str(config_dir), "-h", "queue_directory"], None).stdout.strip())
    pid_file = queue / "pid" / "master.pid"
    return int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, interval=0.02, what="master.pid"))


@dataclass
class PostfixInstance:
    """A private Postfix instance whose ``config_directory`` is ``workdir/postfix``."""

    workdir: Path
    files: Mapping[str, RenderedFile]
    netns: str | None = None
    #: Extra main.cf settings (``postconf -e``), e.g. ``{"smtp_host_lookup": "native"}``.
    overrides: Mapping[str, str] = field(default_factory=dict)
    master_pid: int | None = None

    @property
    def config_dir(self) -> Path:
        return self.workdir / "postfix"

    @property
    def queue_dir(self) -> Path:
        return self.workdir / "spool"

    @property
    def log_path(self) -> Path:
        return Path(self.postconf("maillog_file"))

    def postconf(self, name: str) -> str:
        """The value of a main.cf parameter as this instance sees it."""
        return _run([binary("postconf"), "-c", str(self.config_dir), "-h", name], None).stdout.strip()

    def install(self) -> None:
        """Write main.cf/master.cf/maps, point state into workdir, postmap, check."""
        write_files(self.files, self.workdir, "postfix")
        data_dir = self.workdir / "data"
        for directory in (self.queue_dir, data_dir):
            directory.mkdir(exist_ok=True)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
        os.chmod(data_dir, 0o700)
        settings = {
            "queue_directory": str(self.queue_dir),
            "data_directory": str(data_dir),
            "maillog_file_prefixes": f"/var, /dev/stdout, {self.workdir}",
            **self.overrides,
        }
        _run([binary("postconf"), "-c", str(self.config_dir), "-e", *(f"{k}={v}" for k, v in settings.items())], None)
        settle(self.config_dir)
        for relative in POSTMAP_FILES:
            if relative in self.files:
                # In the instance's namespace: postmap reads main.cf, whose inet_interfaces
                # may name addresses that exist only there.
                _run([binary("postmap"), "-c", str(self.config_dir), str(self.workdir / relative)], self.netns)
        self.check()

    def check(self) -> str:
        """``postfix -c DIR check``; raises LabError with its complaints."""
        result = _run([binary("postfix"), "-c", str(self.config_dir), "check"], self.netns, check=False)
        if result.returncode or "fatal" in result.stderr:
            raise LabError(f"postfix check: {result.stderr.strip()}")
        return result.stderr

    def start(self) -> None:
        """Install, check and start; returns once the master runs and SMTP accepts."""
        self.install()
        self.master_pid = postfix_command(self.config_dir, "start", netns=self.netns)
        address, _, port = self.files_smtp_endpoint()
        wait_for(lambda: can_connect(address.strip("[]"), int(port), self.netns), 30, interval=0.02, what=f"SMTP on {address}:{port}")

    def files_smtp_endpoint(self) -> tuple[str, str, str]:
        """(address, ':', port) of the first inet service in master.cf."""
        for line in (self.config_dir / "master.cf").read_text().splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1] == "inet" and ":" in fields[0]:
                return fields[0].rpartition(":")
        raise LabError("master.cf has no address:port inet service; render with mailstack.lab.postfix.lab_layout")

    def stop(self) -> None:
        """``postfix stop``, then make sure the master (by PID) is gone."""
        if self.master_pid is None:
            return
        _run([binary("postfix"), "-c", str(self.config_dir), "stop"], self.netns, check=False)
        pid = self.master_pid
        try:
            wait_for(lambda: not _alive(pid), 30, what=f"postfix master {pid} to exit")
        except LabError:
            os.kill(pid, signal.SIGKILL)
        self.master_pid = None

    def flush(self) -> None:
        """Attempt delivery of every deferred message now (``postqueue -f``)."""
        _run([binary("postqueue"), "-c", str(self.config_dir), "-f"], self.netns)

    def queue(self) -> list[dict[str, Any]]:
        """The queue as ``postqueue -j`` reports it: one dict per message."""
        output = _run([binary("postqueue"), "-c", str(self.config_dir), "-j"], self.netns).stdout
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def log(self) -> str:
        """The instance's maillog_file (empty until postlogd wrote it)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> PostfixInstance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie we do not own still "exists"; check its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@dataclass
class OpenDkim:
    """OpenDKIM in the foreground (``opendkim -f``) on the rendered configuration."""

    workdir: Path
    files: Mapping[str, RenderedFile]
    netns: str | None = None
    process: subprocess.Popen[bytes] | None = None
    #: Where its stdout and stderr go (it logs nothing else: there is no syslog).
    log_path: Path | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "opendkim" / "opendkim.conf"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def install(self) -> None:
        """Write the files; the key file is owned by the opendkim user, mode 0600, in
        a 0700 directory of its own."""
        written = write_files(self.files, self.workdir, "opendkim")
        user = pwd.getpwnam("opendkim")
        for path in written:
            if "/keys/" in str(path):
                os.chown(path, user.pw_uid, user.pw_gid)
                os.chown(path.parent, user.pw_uid, user.pw_gid)
                path.parent.chmod(0o700)
        self.check()

    def check(self) -> None:
        """``opendkim -n``: parse the configuration and open its tables."""
        result = _run([binary("opendkim"), "-n", "-x", str(self.conf_path)], None, check=False)
        if result.returncode:
            raise LabError(f"opendkim -n: {(result.stderr or result.stdout).strip()}")

    def start(self) -> None:
        self.install()
        command = [binary("opendkim"), "-f", "-x", str(self.conf_path)]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        log_path = self.log_path or self.workdir / "opendkim.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.process = subprocess.Popen(command, stdout=fd, stderr=fd, start_new_session=True)
        os.close(fd)
        socket_spec = next(line.split()[1] for line in self.conf_path.read_text().splitlines() if line.startswith("Socket"))
        port, _, address = socket_spec.removeprefix("inet:").partition("@")

        def ready() -> bool:
            if self.process and self.process.poll() is not None:
                raise LabError(f"opendkim exited with {self.process.returncode}: see {log_path}")
            return can_connect(address.strip("[]"), int(port), self.netns)

        wait_for(ready, 30, interval=0.02, what=f"opendkim on {address}:{port}")

    def stop(self) -> None:
        stop_child(self.process, timeout=15)
        self.process = None

    def __enter__(self) -> OpenDkim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
