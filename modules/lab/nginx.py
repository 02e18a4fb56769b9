"""Debian's nginx serving MTA-STS policy hosts exactly as a gateway does.

The site is the one the gateway deployment installs (``mailstack.gateway.render.
render_mta_sts_site``: a server block per ``mta-sts.<domain>``, the policy files under
``<root>/<domain>/.well-known/mta-sts.txt``); only the main configuration around it is
the lab's own (``templates/lab/nginx.conf.j2``: pid, temp paths and logs in the work
directory, nothing read from /etc/nginx), so ``lab check`` and the tests fetch the
policy from the same nginx configuration a gateway runs. ``nginx -t`` checks the
configuration before the start, as the gateway's activation does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstack.gateway import render
from mailstack.gateway.layout import Layout
from mailstack.lab import files
from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError
from mailstack.lab.process import accepts, spawn, until
from mailstack.lab.state import private_dir
from mailstack.plan import Plan

SITE = "site.conf"
HTTPS_PORT = 443


@dataclass(frozen=True, slots=True)
class PolicySite:
    """One nginx instance's files: its main configuration and the rendered site."""

    workdir: Path
    listen: tuple[tuple[str, int], ...]

    @property
    def config(self) -> Path:
        return self.workdir / "nginx.conf"

    @property
    def layout(self) -> Layout:
        """Where the site's document roots are and what it listens on."""
        return Layout(mta_sts_dir=str(self.workdir / "www"), https_listen=tuple(f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in self.listen))

    def write(self, plan: Plan, cert: str, key: str, policies: Mapping[str, str] | None = None) -> None:
        """The rendered site for ``plan`` and each domain's policy file (``policies``
        replaces texts, for tests serving a policy other than the plan's)."""
        private_dir(self.workdir)
        private_dir(self.workdir / "tmp")
        private_dir(self.workdir / "run")  # nginx writes its pid file 0644 whatever the umask
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            private_dir(self.workdir / "tmp" / sub)
        layout = self.layout
        site = render.render_mta_sts_site(plan, layout, cert, key, "lab")
        files.write(self.workdir / SITE, site, 0o600)
        for domain, text in {**render.policies(plan), **(policies or {})}.items():
            path = Path(layout.host_path(render.policy_path(domain)))
            for directory in reversed(path.relative_to(self.workdir).parents[:-1]):
                private_dir(self.workdir / directory)  # the workers run as root: nobody else reads
            files.write(path, text, 0o600)
        files.write(self.config, files.render("nginx.conf.j2", workdir=str(self.workdir), site=str(self.workdir / SITE)), 0o600)

    def command(self) -> list[str]:
        return [binary("nginx"), "-e", "stderr", "-p", str(self.workdir), "-c", str(self.config)]

    def check(self) -> None:
        """``nginx -t``: LabError with nginx's complaint."""
        result = subprocess.run([*self.command(), "-t", "-q"], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise LabError(f"nginx -t failed for {self.config}: {result.stderr.strip()}")

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        """Check, start in the foreground (``daemon off``), wait until every listener
        accepts."""
        self.check()
        process = spawn(self.command(), log)
        until(lambda: all(accepts(address, port) for address, port in self.listen), 30, "nginx (MTA-STS policy hosts)", process, log)
        return process

