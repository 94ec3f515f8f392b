"""`builtin-rsa-sign` with Teaclave's fixtures, every party played here, against a running Cloister.

Usage: python examples/builtins/rsa_sign.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin-rsa-sign")
