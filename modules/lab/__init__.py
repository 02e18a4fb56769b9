"""The local lab: real servers (BIND, Postfix, OpenDKIM, an Odoo stand-in) on loopback.

Used by ``mailstack lab`` and by the tests, so the tests exercise the same server
set-up users rehearse with. Nothing here runs at import time.
"""
