"""RFC 2136 dynamic updates, without Pulumi: TSIG-signed reads and updates guarded by
prerequisites (``wire``), so that the Pulumi provider and the lab publish records the
same way and never overwrite data mailstack did not write."""
