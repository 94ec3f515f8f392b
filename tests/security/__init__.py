"""The adversarial security suite (a package, so its conftest never shadows tests/e2e/conftest.py)."""
