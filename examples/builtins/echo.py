"""`builtin-echo` with Teaclave's fixtures, every party played here, against a running Cloister.

Usage: python examples/builtins/echo.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin-echo")
