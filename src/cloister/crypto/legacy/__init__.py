"""Teaclave's file formats, kept for compatibility: hazardous by design, so every import names this package.

``aes_gcm_file`` encrypts a whole file under the caller's key *and IV* (reusing a registration reuses the
nonce); ``protected_fs`` is the SGX Protected-FS layout with fixed all-zero nonces under per-node keys.
Use the recipes in ``cloister.crypto.files`` instead; they pick the right module for a ``FileCrypto``.
"""

from collections.abc import Callable

Progress = Callable[[int], None]
"""Called with the number of bytes just processed, for progress bars."""
