"""`builtin-logistic-regression-train` with Teaclave's test data, every party played here, against a running Cloister.

Usage: .venv/bin/python examples/builtins/logistic_regression_train.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin-logistic-regression-train")
