"""Access control service: every authorization decision, from the deployment's casbin policy."""
