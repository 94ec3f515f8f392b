"""`builtin-gbdt-predict` with Teaclave's test data, every party played here, against a running Cloister.

Usage: .venv/bin/python examples/builtins/gbdt_predict.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin-gbdt-predict")
