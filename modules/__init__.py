"""mailstack: the mail domain of an Odoo deployment as code.

The package is split one concept per module: ``model`` holds the typed declaration,
``config`` turns a stack file into it, the rule modules (``spf``, ``txt``, ``dkim``,
``dmarc``, ``mx``) hold each mail rule once, and ``plan`` turns a declaration into
``Record`` values that the Pulumi components, the CLI, the policy pack and the checks
share. Nothing here does I/O at import time.
"""
