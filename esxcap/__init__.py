"""esxcap: packet captures on VMware ESXi hosts over SSH."""

__version__ = "0.1.0"
