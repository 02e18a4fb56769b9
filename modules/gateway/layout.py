"""Where a gateway host keeps the rendered files and how its services meet.

The defaults are Debian's; the lab and the tests use a ``Layout`` rooted in their own
work directory. Rendering (``mailstack.gateway.render``) and the deployment
(``mailstack.providers.gateway``) read the same layout, so the paths in main.cf, the
copied files and the commands always agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the rendered files live on a gateway host and how its services meet.

    The defaults are Debian's. ``postfix_dir`` is not named in main.cf (its maps are
    ``${config_directory}/...``), so the same main.cf runs from any directory."""

    postfix_dir: str = "/etc/postfix"
    opendkim_dir: str = "/etc/opendkim"
    mailstack_dir: str = "/etc/mailstack"
    #: One directory per domain, ``<domain>/.well-known/mta-sts.txt`` in it: nginx's
    #: document root of ``mta-sts.<domain>``.
    mta_sts_dir: str = "/var/www/mta-sts"
    nginx_dir: str = "/etc/nginx"
    #: nginx ``listen`` values of the MTA-STS policy hosts (``mtaSts.serve: gateway``);
    #: the lab and the tests listen on one loopback address and port.
    https_listen: tuple[str, ...] = ("443", "[::]:443")
    systemd_dir: str = "/etc/systemd/system"
    maillog_file: str = "/var/log/postfix.log"
    opendkim_pidfile: str = "/run/opendkim/opendkim.pid"
    opendkim_user: str = "opendkim"
    milter_host: str = "127.0.0.1"
    milter_port: int = 8891
    #: master.cf service names of the SMTP listeners: ``smtp`` is port 25 on every
    #: interface; the lab uses ``127.0.20.10:25``-style endpoints.
    smtp_service: str = "smtp"
    submission_service: str = "submission"
    inet_protocols: str = "all"
    #: The unprivileged user Postfix's pipe runs the mailgate as (never root).
    mailgate_user: str = "mailgate"
    #: argv prefix of the mailgate: the stdlib-only script, copied to the host (the
    #: last word). ``-I -S``: isolated from PYTHON* variables and the user's and site
    #: packages (it needs neither), which also saves the start-up of ``site`` once per
    #: message.
    mailgate_command: tuple[str, ...] = ("/usr/bin/python3", "-I", "-S", "/usr/local/lib/mailstack/mailgate.py")
    #: Recipients per mailgate run: all of a message's (Odoo processes it once).
    mailgate_recipient_limit: int = 50
    #: The resident mailgate (``gateway.mailgate.delivery: lmtp``): where it listens for
    #: Postfix's LMTP client, and its argv (the stdlib-only service, copied beside the
    #: mailgate script, whose rules it loads). Loopback only: what connects there posts
    #: to Odoo, as anything may that reaches port 25.
    mailgated_host: str = "127.0.0.1"
    mailgated_port: int = 10028
    mailgated_command: tuple[str, ...] = ("/usr/bin/python3", "-I", "-S", "/usr/local/lib/mailstack/mailgated.py")
    #: mailstack-aliasd (RCPT validation against Odoo's aliases): where it listens for
    #: Postfix's socketmap lookups, and its stdlib-only script, run as the mailgate user.
    aliasd_host: str = "127.0.0.1"
    aliasd_port: int = 10027
    aliasd_command: tuple[str, ...] = ("/usr/bin/python3", "/usr/local/lib/mailstack/aliasd.py")
    #: postsrsd (SRS for ``inbound.mode: forward``): where it listens, its forward and
    #: reverse tcp tables (a host of its own has it on 127.0.0.1; the lab, whose
    #: gateways share one namespace, on each gateway's own address).
    srs_host: str = "127.0.0.1"
    srs_forward_port: int = 10001
    srs_reverse_port: int = 10002
    srs_secret_file: str = "/etc/postsrsd.secret"
    #: Cyrus sasldb with Odoo's SMTP AUTH user (``gateway.smtpAuth``); root:postfix 0640,
    #: so smtpd (user postfix, not chrooted) reads it and nobody else does.
    sasldb_path: str = "/etc/sasldb2"

    def host_path(self, relative: str) -> str:
        """The absolute path on the host of a rendered file (``postfix/main.cf`` →
        ``/etc/postfix/main.cf``)."""
        top, _, rest = relative.partition("/")
        roots = {
            "postfix": self.postfix_dir,
            "opendkim": self.opendkim_dir,
            "mailstack": self.mailstack_dir,
            "odoo": f"{self.mailstack_dir}/odoo",
            "mta-sts": self.mta_sts_dir,
            "nginx": self.nginx_dir,
            "systemd": self.systemd_dir,
            "postsrsd": "/etc/default",
        }
        return f"{roots[top]}/{rest}"
