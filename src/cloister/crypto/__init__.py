"""Cryptographic recipes (layer 2): sealing values at rest; file schemas come with the data plane."""
