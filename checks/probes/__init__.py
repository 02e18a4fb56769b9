"""Fetches with I/O, each returning a typed observation the checks judge without I/O:
the SPF record tree, pyspf bound to our resolver, SMTP sessions with each MX, the
MTA-STS policy over HTTPS, and the end-to-end probe messages."""
