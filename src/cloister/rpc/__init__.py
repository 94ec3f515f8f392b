"""RPC plumbing (layer 3): attested servers and channels, error mapping, identity metadata.

Services never build grpc servers or channels themselves: they call :func:`create_server` and
:class:`Peer`, so every endpoint gets the same TLS, attestation checks, limits and errors.
"""
