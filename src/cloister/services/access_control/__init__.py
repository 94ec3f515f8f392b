"""Access control service: answers whether a role may call an API, from a casbin policy."""
