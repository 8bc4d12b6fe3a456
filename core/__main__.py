"""`python -m core` is the `quarry` command."""

from core.cli import main

main()
