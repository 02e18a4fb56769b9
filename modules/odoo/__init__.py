"""Odoo's side of the mail domain, without Pulumi: the XML-RPC client (``client``), what
the stack declares inside Odoo (``desired``) and the operations that keep one record
in that state while touching nothing mailstack did not create (``records``)."""
