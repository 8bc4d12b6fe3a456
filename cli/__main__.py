"""`python -m quarry.cli` is the `quarry` command."""

from quarry.cli import main

main()
