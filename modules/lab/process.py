"""Starting and stopping the processes the lab and the tests run, by PID, always."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def stop_child(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM a child, wait up to ``timeout``, then SIGKILL: it never outlives us."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def spawn(command: Sequence[str], log: Path, *, umask: int = 0o077, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A daemon in the foreground of its own session (it outlives the starting process,
    ``lab down`` stops it by PID), stdout and stderr appended to ``log`` (0600)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
                                umask=umask, env=env)
    finally:
        os.close(fd)


def accepts(address: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to address:port succeeds (in this namespace)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((address, port)) == 0


def unix_accepts(path: Path) -> bool:
    """True when a unix socket at ``path`` accepts a connection (a milter is ready)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(str(path)) == 0


def until(condition: Callable[[], Any], timeout: float, what: str, process: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> Any:
    """Poll ``condition`` every 10 ms until truthy; RuntimeError when ``process`` exits
    first (with the end of ``log``) or on timeout. The timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: the process exited with {process.returncode}: {tail}".strip())
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)
