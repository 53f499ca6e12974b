"""Allow ``python -m esxcap``."""

from esxcap.cli import main

main()
