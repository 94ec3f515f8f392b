"""``python -m cloister``: the same as the ``cloister`` command."""

from cloister.cli.main import main

main()
