"""Cryptographic recipes (layer 2): sealing values at rest (``sealing``) and the file schemas users
encrypt their data with (``files``). Teaclave's caller-IV schemas live in ``legacy`` so that every
use of them shows in review."""
