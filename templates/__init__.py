"""The Jinja templates of the gateway's configuration (Postfix, OpenDKIM, odoo.conf,
the mailgate), shipped as package data of ``mailstack.templates``; ``mailstack.gateway.render``
loads them with ``jinja2.PackageLoader``. Configuration only: no logic lives here."""
