"""The shell commands the gateway component runs on a Debian 12 host over SSH.

pulumi-command runs each as one ``sh -c`` string, without a terminal, as the SSH user
(root). Every value in them goes through ``shlex.quote``; secrets never do — they
arrive on stdin. docs/gateway.md ("What the deploy does on a host") says what each step
does; tests/test_gateway_deploy.py runs them on a booted Debian 12, which is where
the details below were found:

* ``apt-get update`` exits 0 when the mirror cannot be reached (it only warns), so a
  host would install from stale lists: ``--error-on=any`` makes it fail.
* ``postfix check`` writes its complaints to stderr only when stderr is a terminal
  (otherwise to syslog): it runs under ``script`` (util-linux, essential in Debian), so
  a failing check reports why.
* ``systemctl reload-or-restart postfix`` does not revive a failed ``postfix@-`` (the
  umbrella unit only propagates the reload): both units are named.
* Postfix starts without the certificate ``gateway.tls`` names and fails every STARTTLS
  later; activation refuses first, naming the key.
* nginx (``mtaSts.serve: gateway``) is tested with ``nginx -t`` beside ``postfix check``,
  before anything restarts, and reloaded last: Debian's package starts it on install
  with its default site (port 80 only), which stays as it is.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

q = shlex.quote


def packages(package_names: Sequence[str], mailgate_user: str, directories: Iterable[str], keys_dir: str, opendkim_user: str) -> str:
    """Install the packages, add the mailgate's system user, make the directories the
    files are copied into (0755, existing ones untouched) and OpenDKIM's key directory."""
    return (
        "set -eu; export DEBIAN_FRONTEND=noninteractive; "
        "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections; "
        f"apt-get update -q --error-on=any; apt-get install -y -q {' '.join(q(p) for p in package_names)}; "
        f"id -u {q(mailgate_user)} >/dev/null 2>&1 || useradd --system --no-create-home "
        f"--home-dir /nonexistent --shell /usr/sbin/nologin {q(mailgate_user)}; "
        f"umask 022; mkdir -p {' '.join(q(d) for d in sorted(set(directories)))}; "
        f"install -d -m 0750 -o {q(opendkim_user)} -g {q(opendkim_user)} {q(keys_dir)}"
    )


def write_secret(path: str, owner: str, group: str, mode: str, directory: str) -> str:
    """Write stdin to ``path`` atomically, never readable by others on the way; the
    directory is made (0755) only when missing, so its own mode stays as it is."""
    new = q(path + ".mailstack-new")
    return (
        f"set -eu; umask 077; test -d {q(directory)} || install -d -m 0755 {q(directory)}; cat > {new}; "
        f"chown {q(owner)}:{q(group)} {new}; chmod {q(mode)} {new}; mv -f {new} {q(path)}"
    )


def remove_file(path: str) -> str:
    return f"rm -f {q(path)}"


def sasl_password(sasldb: str, realm: str, user: str) -> str:
    """Set ``user@realm``'s SMTP AUTH password from stdin (``saslpasswd2 -p``: no prompt,
    nothing in argv); the database stays readable by smtpd only (root:postfix 0640;
    Debian creates it root:sasl 0660)."""
    return (
        f"set -eu; umask 027; saslpasswd2 -p -c -f {q(sasldb)} -u {q(realm)} {q(user)}; "
        f"chown root:postfix {q(sasldb)}; chmod 0640 {q(sasldb)}"
    )


def remove_sasl_user(sasldb: str, realm: str, user: str) -> str:
    return f"saslpasswd2 -d -f {q(sasldb)} -u {q(realm)} {q(user)} || true"


def activate(public_files: Sequence[str], scripts: Sequence[str], maps: Sequence[str], postfix_dir: str,
             tls_files: Sequence[tuple[str, str]], keys_dir: str, key_table: str, services: Sequence[str] = (),
             disable: Sequence[str] = (), web: bool = False) -> str:
    """Check the certificate is there, fix modes (``scripts`` executable: the mailgate,
    mailstack-aliasd), build the maps, ``postfix check``, then (only if all of that
    passed) restart OpenDKIM and ``services`` (mailstack-aliasd, postsrsd: they answer
    Postfix's lookups; mailstack-mailgate: Postfix's LMTP next hop — so before its
    reload), and reload Postfix; units in ``disable`` (a service the stack no longer
    uses, e.g. the resident mailgate after ``delivery: pipe``) are stopped and disabled
    when present. A restart of the resident mailgate cuts deliveries in flight: Postfix
    retries them, and Odoo ignores a Message-Id it already stored. After the restart,
    keys in ``keys_dir`` the KeyTable no longer names (a previous selector's) are
    removed: OpenDKIM reads a key file at each signature, so the old one is kept until
    the new tables are live. ``web``: nginx serves the MTA-STS policy hosts; its
    configuration is tested with the others and it is reloaded after Postfix."""
    steps = ["set -eu"]
    for key, path in tls_files:
        message = f"mailstack: {path} ({key}) is missing on this host: install the certificate before the deploy"
        steps.append(f"test -r {q(path)} || {{ echo {q(message)} >&2; exit 1; }}")
    steps.append(f"chmod 0644 {' '.join(q(p) for p in public_files)}")
    steps.append(f"chmod 0755 {' '.join(q(p) for p in scripts)}")
    if maps:
        steps.append(f"postmap {' '.join(q(m) for m in maps)}")
    steps.append(f"script -qefc {q(f'postfix -c {q(postfix_dir)} check')} /dev/null >&2")
    if web:
        steps.append("nginx -t -q")
    steps += ["systemctl daemon-reload", f"systemctl enable opendkim postfix {' '.join(q(u) for u in services)}".rstrip(),
              "systemctl restart opendkim", *(f"systemctl restart {q(u)}" for u in services),
              "systemctl reload-or-restart postfix postfix@-"]
    steps += [f"if systemctl cat {q(u)} >/dev/null 2>&1; then systemctl disable --now {q(u)}; fi" for u in disable]
    if web:
        steps += ["systemctl enable nginx", "systemctl reload-or-restart nginx"]
    steps.append(f'for key in {q(keys_dir)}/*.private; do test -e "$key" || continue; '
                 f'grep -qF -- ":$key" {q(key_table)} || rm -f -- "$key"; done')
    return "; ".join(steps)
