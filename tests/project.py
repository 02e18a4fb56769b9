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
