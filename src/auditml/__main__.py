"""``python -m auditml`` runs the ``auditml`` command."""

from auditml.cli import main

main()
