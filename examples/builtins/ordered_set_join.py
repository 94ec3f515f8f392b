"""`builtin-ordered-set-join` with Teaclave's test data, every party played here, against a running Cloister.

Usage: .venv/bin/python examples/builtins/ordered_set_join.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin-ordered-set-join")
