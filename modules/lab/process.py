"""Stopping the child processes the lab and the tests start, by PID, always."""

from __future__ import annotations

import signal
import subprocess


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
