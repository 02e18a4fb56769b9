"""Writing the lab's own configuration files: rendered from ``templates/lab/`` (every
value checked for its file's format) with the explicit mode (and owner) each one needs,
whatever the process's umask."""

from __future__ import annotations

import functools
import os
import pwd
from pathlib import Path
from typing import Any

import jinja2

from mailstack.gateway import render as gateway_render
from mailstack.lab.state import private_dir


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The gateway's template environment, built once (each template compiles once)."""
    return gateway_render.new_environment()


def render(template: str, **values: Any) -> str:
    """One lab template (``receiver/main.cf.j2``, in ``templates/lab/``) rendered with
    ``values``, every value checked for its file's format as the gateway's are
    (``mailstack.gateway.formats``)."""
    return _environment().get_template(f"lab/{template}").render(**values)


def write(path: Path, content: str | bytes, mode: int = 0o644, *, owner: str | None = None) -> Path:
    """Write ``content`` to ``path`` with exactly ``mode`` (never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.fchmod(handle.fileno(), mode)
        if owner:
            entry = pwd.getpwnam(owner)
            os.fchown(handle.fileno(), entry.pw_uid, entry.pw_gid)
    os.replace(temporary, path)
    return path


def log_file(directory: Path, name: str) -> Path:
    """A log file that exists, 0600, in a 0700 root directory: daemons that open it
    later (postlogd, named) keep the mode they find."""
    private_dir(directory)
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)
    return path
