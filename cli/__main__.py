"""`python -m k2.cli` runs the k2 command."""

from .main import main

main()
