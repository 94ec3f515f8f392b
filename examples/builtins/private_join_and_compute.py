"""`builtin-private-join-and-compute` with Teaclave's test data, every party played here, against a running Cloister.

Usage: .venv/bin/python examples/builtins/private_join_and_compute.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin-private-join-and-compute")
