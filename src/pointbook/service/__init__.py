"""The HTTP service: the ledger over HTTP with per-domain roles (and, later, the portal)."""
