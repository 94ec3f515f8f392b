"""The ``cloister`` command (layer 6): start the platform, check it, run one service."""
