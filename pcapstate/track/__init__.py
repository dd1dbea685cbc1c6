"""Track: the connection table and each endpoint's TCP state machine, with Zeek's view of
every connection beside it, in compiled code over packed records."""
