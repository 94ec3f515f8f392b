"""`builtin_principal_components_analysis` with Teaclave's test data, every party played here.

Usage: .venv/bin/python examples/builtins/principal_components_analysis.py [--state-dir DIR]
"""

from _harness import main

if __name__ == "__main__":
    main("builtin_principal_components_analysis")
