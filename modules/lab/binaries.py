"""The Debian server programs the lab runs, found once and run by the path found.

Cron and service managers start commands with a short PATH (``/usr/bin:/bin``) that
lacks ``/usr/sbin``, where Debian installs ``named``, ``postfix`` and ``opendkim``; so
every lab command is run by its absolute path, resolved here: PATH first, then the
Debian directories. A missing program names the package that provides it.
"""

from __future__ import annotations

import functools
import os
import shutil

from mailstack.core.errors import MailstackError

#: Every program the lab and its tests run, and the Debian package providing it.
PACKAGES = {
    "ip": "iproute2",
    "named": "bind9",
    "named-checkconf": "bind9-utils",
    "dnssec-keygen": "bind9-utils",
    "dnssec-signzone": "bind9-utils",
    "dnssec-dsfromkey": "bind9-utils",
    "dig": "bind9-dnsutils",
    "postfix": "postfix",
    "postconf": "postfix",
    "postmap": "postfix",
    "postqueue": "postfix",
    "opendkim": "opendkim",
    "opendkim-testmsg": "opendkim-tools",
    "saslpasswd2": "sasl2-bin",
    "opendmarc": "opendmarc",
    "policyd-spf": "postfix-policyd-spf-python",
    "useradd": "passwd",
    "setpriv": "util-linux",
    "dovecot": "dovecot-imapd",
    "postsrsd": "postsrsd",
    "nginx": "nginx-light",
}
#: Where Debian installs programs, searched after PATH.
SYSTEM_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


class MissingProgram(MailstackError):
    """A program the lab needs is not installed."""


def find(name: str) -> str | None:
    """The absolute path of ``name`` (PATH, then the Debian directories), or None."""
    found = shutil.which(name)
    if found:
        return os.path.abspath(found)
    return next((path for path in (os.path.join(d, name) for d in SYSTEM_DIRS) if os.access(path, os.X_OK)), None)


@functools.cache
def binary(name: str) -> str:
    """The absolute path of a program the lab runs; MissingProgram names its package."""
    path = find(name)
    if path is None:
        package = PACKAGES.get(name, name)
        raise MissingProgram(f"{name} is not installed; install it with: apt-get install -y --no-install-recommends {package}")
    return path


def missing_packages() -> list[str]:
    """The Debian packages of the programs that cannot be found, sorted."""
    return sorted({package for name, package in PACKAGES.items() if find(name) is None})
