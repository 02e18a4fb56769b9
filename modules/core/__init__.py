"""The vocabulary every other layer shares: the typed declaration of a mail domain
(``model``), the ``Record`` value, the exception root (``errors``), DNS name rules
(``names``), TXT character-strings (``txt``) and the zone-file/rdata form of a record
(``zonefile``). It imports nothing from the rest of mailstack."""
