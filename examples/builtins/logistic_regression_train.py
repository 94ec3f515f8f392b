"""`builtin-logistic-regression-train` with Teaclave's fixtures, every party played here, against a running Cloister.

Usage: python examples/builtins/logistic_regression_train.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin-logistic-regression-train")
