"""`python -m core` is the `quarry` command."""

from quarry.cli import main

main()
