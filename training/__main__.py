"""``python -m training`` is the ``kiln`` command."""

from training.cli import main

main()
