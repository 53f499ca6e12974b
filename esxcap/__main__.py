"""Allow ``python -m esxcap``."""

from esxcap.cli.main import main

main()
