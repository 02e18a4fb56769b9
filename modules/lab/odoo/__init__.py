"""An Odoo 17 stand-in: the mail side of Odoo, modelled on Odoo 17.0's source.

Odoo itself is the one component the lab and the tests do not run. This package
answers Odoo's external API (XML-RPC ``/xmlrpc/2/common`` and ``/xmlrpc/2/object``)
and behaves as Odoo 17.0 does where mail is concerned, each behaviour naming the Odoo
function it models: the mail gateway's routing (``routing``), the mail it sends back
(``mailing``), IMAP fetching and its cron (``fetchmail``), and the mail-settings models
with their constraints (``settings``, ``threads``) on a small ORM (``orm``, ``model``).
The specification is /work/research/odoo17-spec.md: Odoo 17.0 read in third-party
17.0 copies (no ``odoo/odoo`` 17.0 commit could be cited); what it marks as not
verified is said so where the stand-in has to choose.

``OdooStandIn`` runs it as a child process; ``python -m mailstack.lab.odoo`` is the
process itself.
"""

from mailstack.lab.odoo.process import OdooStandIn

__all__ = ["OdooStandIn"]
