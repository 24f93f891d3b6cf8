"""The k2 command line (installed as the package k2.cli)."""
