"""`python -m walletd` runs the CLI."""

from walletd.cli import main

main()
