"""The command line: the entry point and command table, one module per command group, shared options,
exit codes and the output module (the only user of rich). Nothing outside this package imports it."""

INVENTORY_HELP = "Inventory YAML (else $ESXCAP_INVENTORY, ./inventory.yaml, ~/.config/esxcap/inventory.yaml)."
"""Where the inventory comes from: the entry point's help and the commands' `-i` say the same."""
