"""The Pulumi gateway component: one ``mailstack:gateway:Gateway`` per gateway host.

It deploys over SSH (``pulumi_command.remote``) what ``mailstack.gateway.render`` renders for the
host, in four steps, each a child resource named ``<name>-<part>``:

1. ``packages``: install postfix, opendkim and python3, create the mailgate user and
   the directories (once per host; idempotent commands).
2. one ``CopyToRemote`` per rendered file (``StringAsset`` of its text), plus the
   stdlib-only mailgate script; each re-copies when its own text changes.
3. ``dkim-key`` (and ``odoo-password`` when ``mailstack:odooPassword`` is set, and
   ``smtp-auth`` when ``gateway.smtpAuth`` and ``mailstack:smtpAuthPassword`` are): a
   ``remote.Command`` that writes the secret from **stdin** with ``umask 077`` and
   chowns it (``smtp-auth``: ``saslpasswd2 -p`` reads it into the sasldb). Not CopyToRemote: that copies with the remote default mode, so a key
   would be world-readable until something chmods it; stdin also keeps the secret out
   of the command line. The PEM comes from the ``tls.PrivateKey`` of ``__main__.py``
   (the same key whose public half is the DKIM TXT record) and stays a secret output.
4. ``activate``: fix modes, ``postmap``, ``postfix check``, restart OpenDKIM,
   mailstack-aliasd (RCPT validation against Odoo's aliases, its stdlib-only script
   copied beside the mailgate) and, for ``inbound.mode: forward``, postsrsd; reload
   Postfix. Its ``triggers`` are the hash of every rendered file (and of the key),
   so it re-runs when, and only when, what is on the host should change.

The SSH private key is the Pulumi secret ``mailstack:sshPrivateKey`` (else the SSH
agent is used); host, port and user come from ``gateways[].ssh`` of the stack.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from mailstack.core.model import Gateway
from mailstack.gateway import render as render_module
from mailstack.gateway.layout import Layout
from mailstack.plan import Plan

TYPE = "mailstack:gateway:Gateway"
PACKAGES = ("postfix", "opendkim", "opendkim-tools", "python3", "ssl-cert")
#: Cyrus SASL with sasldb for ``gateway.smtpAuth`` (the password: ``saslpasswd2 -p``, stdin).
SASL_PACKAGES = ("libsasl2-modules", "sasl2-bin")
#: SRS for ``inbound.mode: forward`` (senders rewritten into the stack's domain).
SRS_PACKAGES = ("postsrsd",)


@dataclass
class GatewayArgs:
    """What one gateway host needs; secrets stay Pulumi Outputs."""

    plan: Plan
    gateway: Gateway
    #: The DKIM private key PEM (``tls.PrivateKey.private_key_pem``), a secret.
    dkim_private_key_pem: pulumi.Input[str]
    #: ``mailstack:sshPrivateKey`` (secret); None: the SSH agent.
    ssh_private_key: pulumi.Input[str] | None = None
    #: ``mailstack:odooPassword`` (secret) for the mailgate's password file; None: the
    #: administrator puts the file there (mode 0640 root:<mailgate user>).
    odoo_password: pulumi.Input[str] | None = None
    #: ``mailstack:smtpAuthPassword`` (secret) for ``gateway.smtpAuth``; None: the
    #: administrator runs saslpasswd2 on the host (docs/gateway.md).
    smtp_auth_password: pulumi.Input[str] | None = None
    layout: Layout = field(default_factory=Layout)


def content_hash(files: dict[str, render_module.RenderedFile], mailgate_source: str, *scripts: str) -> str:
    """sha256 over every rendered file (path, mode, text), the mailgate script and any
    other script copied to the host (mailstack-aliasd)."""
    document = json.dumps(
        {"files": [[path, f.mode, f.text] for path, f in sorted(files.items())], "mailgate": mailgate_source, "scripts": list(scripts)},
        sort_keys=True,
    )
    return hashlib.sha256(document.encode()).hexdigest()


def _part(relative: str) -> str:
    """A resource-name part for a rendered path: ``postfix/main.cf`` → ``postfix-main-cf``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", relative).strip("-").lower()


def _write_secret(path: str, owner: str, group: str, mode: str) -> str:
    """Shell that writes stdin to ``path`` never readable by others, atomically."""
    return (
        f"set -eu; umask 077; install -d -m 0755 \"$(dirname {path})\"; cat > {path}.mailstack-new; "
        f"chown {owner}:{group} {path}.mailstack-new; chmod {mode} {path}.mailstack-new; "
        f"mv -f {path}.mailstack-new {path}"
    )


def _sasl_password(sasldb: str, realm: str, user: str) -> str:
    """Shell that sets ``user@realm``'s SMTP AUTH password in the sasldb from stdin
    (``saslpasswd2 -p``: no prompt, nothing in argv) and leaves the database readable
    by smtpd only (root:postfix 0640; Debian creates it root:sasl 0660)."""
    path, quoted_realm, quoted_user = shlex.quote(sasldb), shlex.quote(realm), shlex.quote(user)
    return (
        f"set -eu; umask 027; saslpasswd2 -p -c -f {path} -u {quoted_realm} {quoted_user}; "
        f"chown root:postfix {path}; chmod 0640 {path}"
    )


def _activate_services(layout: Layout, aliasd: bool, forward: bool) -> str:
    """Shell that (re)starts mailstack-aliasd and postsrsd before Postfix reloads (they
    answer its lookups): the aliasd script executable, both enabled and restarted."""
    commands = []
    if aliasd:
        commands.append(f"chmod 0755 {shlex.quote(layout.aliasd_command[-1])}; systemctl enable mailstack-aliasd; systemctl restart mailstack-aliasd; ")
    if forward:
        commands.append("systemctl enable postsrsd; systemctl restart postsrsd; ")
    return "".join(commands)


class GatewayServer(pulumi.ComponentResource):
    """Configure one gateway host from the stack; see the module docstring."""

    content_hash: str
    remote_paths: list[str]

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        stack, gateway, layout = args.plan.stack, args.gateway, args.layout
        files = render_module.render(args.plan, gateway=gateway, layout=layout)  # no key: pushed as a secret below
        mailgate_source = render_module.mailgate_source()
        aliasd = render_module.uses_aliasd(files)
        forward = stack.forwards_through_gateways
        scripts = [render_module.aliasd_source()] if aliasd else []
        self.content_hash = content_hash(files, mailgate_source, *scripts)
        self.remote_paths = [layout.host_path(relative) for relative in files]
        connection = remote.ConnectionArgs(
            host=gateway.ssh.host or gateway.ipv4,
            port=float(gateway.ssh.port),
            user=gateway.ssh.user,
            private_key=pulumi.Output.secret(args.ssh_private_key) if args.ssh_private_key is not None else None,
        )
        child = pulumi.ResourceOptions(parent=self)
        opendkim_user = layout.opendkim_user
        mailgate_script = layout.mailgate_command[-1]
        key_path = layout.host_path(render_module.key_path(stack.dkim.selector))

        package_list = [*PACKAGES, *(SASL_PACKAGES if stack.gateway and stack.gateway.smtp_auth else ()), *(SRS_PACKAGES if forward else ())]
        packages = remote.Command(
            f"{name}-packages",
            connection=connection,
            create=(
                "set -eu; export DEBIAN_FRONTEND=noninteractive; "
                "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections; "
                f"apt-get update -q; apt-get install -y -q {' '.join(package_list)}; "
                f"id -u {layout.mailgate_user} >/dev/null 2>&1 || useradd --system --no-create-home "
                f"--home-dir /nonexistent --shell /usr/sbin/nologin {layout.mailgate_user}; "
                f"install -d -m 0755 {layout.mailstack_dir} $(dirname {mailgate_script}); "
                f"install -d -m 0750 -o {opendkim_user} -g {opendkim_user} {layout.opendkim_dir}/keys"
            ),
            opts=child,
        )
        after_packages = pulumi.ResourceOptions(parent=self, depends_on=[packages])

        copies: list[pulumi.Resource] = []
        for relative, rendered in files.items():
            copies.append(remote.CopyToRemote(
                f"{name}-{_part(relative)}",
                connection=connection,
                remote_path=layout.host_path(relative),
                source=pulumi.StringAsset(rendered.text),
                triggers=[hashlib.sha256(rendered.text.encode()).hexdigest()],
                opts=after_packages,
            ))
        if aliasd:
            copies.append(remote.CopyToRemote(
                f"{name}-aliasd",
                connection=connection,
                remote_path=layout.aliasd_command[-1],
                source=pulumi.StringAsset(scripts[0]),
                triggers=[hashlib.sha256(scripts[0].encode()).hexdigest()],
                opts=after_packages,
            ))
        copies.append(remote.CopyToRemote(
            f"{name}-mailgate",
            connection=connection,
            remote_path=mailgate_script,
            source=pulumi.StringAsset(mailgate_source),
            triggers=[hashlib.sha256(mailgate_source.encode()).hexdigest()],
            opts=after_packages,
        ))

        self.dkim_private_key_pem = pulumi.Output.secret(args.dkim_private_key_pem)
        key_hash = self.dkim_private_key_pem.apply(lambda pem: hashlib.sha256(pem.encode()).hexdigest())
        self.dkim_key = remote.Command(
            f"{name}-dkim-key",
            connection=connection,
            create=_write_secret(key_path, opendkim_user, opendkim_user, "0600"),
            delete=f"rm -f {key_path}",
            stdin=self.dkim_private_key_pem,
            triggers=[key_hash],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[packages], additional_secret_outputs=["stdin"]),
        )
        secrets: list[pulumi.Resource] = [self.dkim_key]
        if args.odoo_password is not None and stack.gateway is not None:
            password = pulumi.Output.secret(args.odoo_password)
            secrets.append(remote.Command(
                f"{name}-odoo-password",
                connection=connection,
                create=_write_secret(stack.gateway.mailgate.password_file, "root", layout.mailgate_user, "0640"),
                stdin=password,
                triggers=[password.apply(lambda value: hashlib.sha256(value.encode()).hexdigest())],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[packages], additional_secret_outputs=["stdin"]),
            ))

        if args.smtp_auth_password is not None and stack.gateway is not None and stack.gateway.smtp_auth:
            sasl_password = pulumi.Output.secret(args.smtp_auth_password)
            secrets.append(remote.Command(
                f"{name}-smtp-auth",
                connection=connection,
                create=_sasl_password(layout.sasldb_path, gateway.hostname, stack.gateway.smtp_auth.user),
                delete=(f"saslpasswd2 -d -f {shlex.quote(layout.sasldb_path)} -u {shlex.quote(gateway.hostname)} "
                        f"{shlex.quote(stack.gateway.smtp_auth.user)} || true"),
                stdin=sasl_password,
                triggers=[sasl_password.apply(lambda value: hashlib.sha256(value.encode()).hexdigest())],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[packages], additional_secret_outputs=["stdin"]),
            ))

        public = " ".join(path for path, f in zip(self.remote_paths, files.values()) if not f.secret)
        maps = " ".join(layout.host_path(r) for r in render_module.POSTMAP_FILES if r in files)
        self.activate = remote.Command(
            f"{name}-activate",
            connection=connection,
            create=(
                f"set -eu; chmod 0644 {public}; chmod 0755 {mailgate_script}; "
                + (f"postmap {maps}; " if maps else "")
                + f"postfix -c {layout.postfix_dir} check; systemctl daemon-reload; "
                "systemctl enable opendkim postfix; systemctl restart opendkim; "
                + _activate_services(layout, aliasd, forward)
                + "systemctl reload-or-restart postfix"
            ),
            triggers=[self.content_hash, key_hash],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*copies, *secrets]),
        )
        self.register_outputs({"contentHash": self.content_hash, "host": gateway.hostname, "files": self.remote_paths})
