"""The project under test: its stacks, found the way the CLI finds them (its Pulumi.yaml),
and the record plan as a list, which most tests compare."""

from __future__ import annotations

from pathlib import Path

from mailstack import plan
from mailstack.config import project
from mailstack.core.model import MailDomain
from mailstack.core.record import Record

ROOT = Path(__file__).resolve().parent.parent
PROJECT = project.at(ROOT)


def stack_path(name: str) -> Path:
    """``stacks/Pulumi.<name>.yaml`` of this project."""
    return PROJECT.stack_path(name)


def all_stacks() -> list[Path]:
    """Every stack file in ``stacks/``."""
    return PROJECT.stacks()


def planned(stack: MailDomain, gateway_key: str | None = None) -> list[Record]:
    """The plan's records (``plan.build(stack, gateway_key).records``) as a list."""
    return list(plan.build(stack, gateway_key).records)


def lab_variant(directory: Path, zone: str = "acme.test", *, server: str | None = None, port: int | None = None,
                extra: str = "", dns: str = "") -> Path:
    """A copy of the lab stack for another domain (``acme.test`` → ``zone``), optionally
    publishing to another server, with ``extra`` top-level config and ``dns`` keys added
    inside ``mailstack:dns``; returns the stack file's path."""
    text = stack_path("lab").read_text(encoding="utf-8").replace("acme.test", zone) + extra
    if server is not None:
        text = text.replace("    server: 127.0.40.2\n", f"    server: {server}\n")
    if port is not None:
        text = text.replace("    port: 53\n", f"    port: {port}\n")
    text = text.replace("    tsigAlgorithm: hmac-sha256\n", "    tsigAlgorithm: hmac-sha256\n" + dns)
    path = directory / f"Pulumi.{zone}.yaml"
    path.write_text(text, encoding="utf-8")
    return path
