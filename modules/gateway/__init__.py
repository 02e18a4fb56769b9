"""The gateway servers: every configuration file of a gateway host rendered from the
plan through the Jinja templates (``render``, with the host's paths in ``layout``),
and ``mailgate``, the stdlib-only program Postfix runs to hand mail to Odoo."""
