"""Storage service: Teaclave's key-value and queue RPCs, plus atomic commits and watches."""
