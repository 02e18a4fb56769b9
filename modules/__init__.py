"""mailstack: the mail domain of an Odoo deployment as code.

One declaration (a Pulumi stack file) becomes a validated ``MailDomain``; one record
plan derived from it feeds the DNS providers, the gateway servers, the policy pack and
the checks. The sub-packages are layers, each importing only the ones below it (the
import contract in ``pyproject.toml``, checked in CI, keeps it so):

- ``core``: the model (``MailDomain``, ``Record``), errors, names, TXT strings, zone-file form;
- ``rules``: each mail rule once (SPF, DKIM, DMARC, MTA-STS, sender profiles, protection);
- ``config``: stack files and Pulumi config into a ``MailDomain``, every key validated;
- ``plan``: the records a declaration needs and the facts derived with them, as one value;
- ``gateway``: the gateway servers' files rendered from the plan, and the mailgate;
- ``rfc2136``: RFC 2136 dynamic updates on the wire (TSIG, prerequisites);
- ``providers``: the Pulumi resources (Cloudflare, RFC 2136, the gateway deployment);
- ``policy``: the Pulumi policy pack's rules;
- ``checks``: verification of the live domain (the top-level ``checks/`` folder);
- ``lab``: the whole mail path on loopback, with real servers;
- ``cli``: the ``mailstack`` command.

Nothing here does I/O at import time; only ``providers`` and ``policy`` import Pulumi.
"""
