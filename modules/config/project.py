"""Where a project's stacks are: the Pulumi project directory and its ``stackConfigDir``.

``--stack NAME`` means ``Pulumi.NAME.yaml`` in the stack directory of the project the
command runs in, found the way Pulumi finds it: the nearest ``Pulumi.yaml`` from the
working directory up (or ``--project-dir``), whose ``stackConfigDir`` names the folder.
Nothing is looked up next to the installed code, so an installed mailstack works on
any checkout, from any of its directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailstack.config import kinds, stackfile
from mailstack.core.errors import MailstackError, quote

PROJECT_FILE = "Pulumi.yaml"


@dataclass(frozen=True, slots=True)
class Project:
    """A Pulumi project directory and the folder holding its stack files."""

    root: Path
    stacks_dir: Path

    def stack_path(self, name: str) -> Path:
        """``Pulumi.<name>.yaml`` in the project's stack directory; MailstackError for
        a name that is not a stack name (``../x``, ``a/b``): it never leaves the
        directory."""
        try:
            checked = kinds.stack_name(name)
        except ValueError as err:
            raise MailstackError(f"--stack {quote(name)}: {err}") from None
        return self.stacks_dir / f"Pulumi.{checked}.yaml"

    def stacks(self) -> list[Path]:
        """Every stack file of the project, sorted."""
        return sorted(self.stacks_dir.glob("Pulumi.*.yaml"))

    def stack_names(self) -> list[str]:
        """The names of the project's stacks (``online`` for ``Pulumi.online.yaml``)."""
        return [path.name[len("Pulumi."):-len(".yaml")] for path in self.stacks()]


def at(root: Path) -> Project:
    """The project in ``root``; MailstackError when it has no readable Pulumi.yaml."""
    path = root / PROJECT_FILE
    if not path.is_file():
        raise MailstackError(f"--project-dir {root}: no {PROJECT_FILE} there")
    document = stackfile.parse(stackfile.read_text(path), str(path)) or {}
    configured = document.get("stackConfigDir") if isinstance(document, dict) else None
    stacks_dir = root / configured if isinstance(configured, str) and configured else root
    return Project(root.resolve(), stacks_dir.resolve())


def find(start: Path | None = None) -> Project:
    """The nearest project from ``start`` (the working directory) upwards."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / PROJECT_FILE).is_file():
            return at(directory)
    raise MailstackError(
        f"no {PROJECT_FILE} in {here} or above: run from the project directory, pass --project-dir, "
        "or name the file with --stack-file"
    )
