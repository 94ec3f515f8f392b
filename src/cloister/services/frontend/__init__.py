"""Frontend service: authenticates and authorizes every client call, forwards it, audits it."""
