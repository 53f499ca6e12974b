"""What esxcap tells Wireshark as an extcap: its interfaces (one per inventory host, `esxcap-HOST`, and one
per saved recipe, `esxcap-recipe-NAME`), their link type, and the capture options dialog, built from the
inventory and the discovery cache only (Wireshark asks at every start: no SSH here).

The dialog's fields are the `capture` command's options: the target (VM vNICs, vmknics, uplinks, Drop;
Wireshark's reload button discovers the host again), the capture points the host's build offers, the
direction, the flow filters, and when to stop. A recipe interface's streams are set by the recipe; its
dialog has the stop conditions only. Passwords never go through the dialog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from esxcap import __version__
from esxcap.esxi.pktcap import Direction
from esxcap.inventory import HostConfig, Inventory, SavedRecipe
from esxcap.plan.choices import Choice, encode, shown
from esxcap.ssh.discovery_cache import CachedHost

HOST_PREFIX = "esxcap-"
RECIPE_PREFIX = "esxcap-recipe-"
HELP_URL = "https://pypi.org/project/esxcap/"
TARGET_OPTION = "target"
TARGET_ARG = 0
"""The target selector is the dialog's first field: Wireshark's reload asks for its values by number."""

FLOW_FILTERS = (
    ("srcmac", "Source MAC"),
    ("dstmac", "Destination MAC"),
    ("any-mac", "Source or destination MAC"),
    ("ethtype", "EtherType (0x0806 or arp, ipv4...)"),
    ("vlan", "VLAN ID"),
    ("srcip", "Source IPv4[/prefix]"),
    ("dstip", "Destination IPv4[/prefix]"),
    ("ip", "Source or destination IPv4"),
    ("proto", "IP protocol (0x06 or tcp, udp, icmp)"),
    ("srcport", "TCP source port"),
    ("dstport", "TCP destination port"),
    ("tcpport", "TCP port (either side)"),
    ("udpport", "UDP port (either side; ESXi 6.7+)"),
    ("vxlan", "VXLAN id"),
)
"""The flow filters as `capture` names them (option without dashes, label)."""

DIRECTIONS: tuple[tuple[Direction, str], ...] = (
    ("both", "Both directions"),
    ("in", "In (to the VM, vmknic or host)"),
    ("out", "Out"),
)


@dataclass(frozen=True)
class Interface:
    """One extcap interface: an inventory host, or a saved recipe."""

    value: str
    host: HostConfig | None = None
    recipe: SavedRecipe | None = None

    @property
    def display(self) -> str:
        if self.host is not None:
            return shown(f"ESXi {self.host.name} ({self.host.hostname}) via esxcap")
        assert self.recipe is not None
        return shown(f"esxcap recipe {self.recipe.name}: {self.recipe.command}")


def interfaces(inventory: Inventory) -> dict[str, Interface]:
    """Interface value -> interface, hosts first, then recipes."""
    found = {
        f"{HOST_PREFIX}{encode(h.name)}": Interface(f"{HOST_PREFIX}{encode(h.name)}", host=h)
        for h in inventory.hosts.values()
    }
    for recipe in inventory.recipes.values():
        value = f"{RECIPE_PREFIX}{recipe.name}"
        found[value] = Interface(value, recipe=recipe)
    return found


def _line(kind: str, **fields: object) -> str:
    return kind + " " + "".join(f"{{{key.replace('_', '')}={value}}}" for key, value in fields.items())


def interface_lines(inventory: Inventory) -> list[str]:
    lines = [_line("extcap", version=__version__, help=HELP_URL)]
    lines += [_line("interface", value=i.value, display=i.display) for i in interfaces(inventory).values()]
    return lines


def dlt_lines(interface: Interface) -> list[str]:
    """One link type; the pcapng esxcap writes names each stream's own."""
    return [_line("dlt", number=1, name="EN10MB", display=shown(f"Ethernet ({interface.value})"))]


class _Dialog:
    """Numbers the fields as they are added."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.number = -1

    def arg(self, call: str, display: str, kind: str, tooltip: str, group: str, **extra: object) -> int:
        self.number += 1
        self.lines.append(
            _line(
                "arg",
                number=self.number,
                call=f"--{call}",
                display=display,
                type=kind,
                tooltip=shown(tooltip),
                **extra,
                group=group,
            )
        )
        return self.number

    def values(self, arg: int, choices: Sequence[Choice], default: str | None = None) -> None:
        for choice in choices:
            extra = {"default": "true"} if choice.value == default else {}
            self.lines.append(_line("value", arg=arg, value=choice.value, display=choice.display, **extra))


def target_lines(cached: CachedHost | None) -> list[str]:
    """The target selector's values (also the answer to Wireshark's reload)."""
    dialog = _Dialog()
    dialog.values(TARGET_ARG, cached.targets if cached else ())
    return dialog.lines


def config_lines(interface: Interface, cached: CachedHost | None) -> list[str]:
    """The capture options dialog of one interface."""
    dialog = _Dialog()
    if interface.host is not None:
        known = (
            f"ESXi {cached.version} build {cached.build}, discovered by esxcap"
            if cached
            else "not discovered yet: press reload (or run esxcap discover)"
        )
        target = dialog.arg(
            TARGET_OPTION,
            "Target",
            "selector",
            f"What to capture on {interface.host.name} ({known})",
            "Target",
            reload="true",
            placeholder="Discover the host",
            required="true",
        )
        assert target == TARGET_ARG
        dialog.lines += target_lines(cached)
        points = dialog.arg(
            "point",
            "Capture points",
            "multicheck",
            "pktcap-uw capture points (none ticked: the target's points for the direction)"
            + (f"; offered by ESXi {cached.version} build {cached.build}" if cached else ""),
            "Target",
        )
        dialog.values(points, [Choice(p, p) for p in (cached.points if cached else ())])
        direction = dialog.arg("dir", "Direction", "radio", "Seen from the VM, vmknic or wire", "Target")
        dialog.values(direction, [Choice(v, d) for v, d in DIRECTIONS], default="both")
        for call, label in FLOW_FILTERS:
            dialog.arg(
                call,
                label,
                "string",
                f"pktcap-uw flow filter: {label} (esxcap capture --{call})",
                "Flow filters",
            )
    dialog.arg(
        "count",
        "Packets per stream",
        "unsigned",
        "Stop each stream after this many packets",
        "Stop",
        range="1,4294967295",
    )
    dialog.arg("duration", "Duration (seconds)", "double", "Stop after this many seconds", "Stop")
    dialog.arg("max-bytes", "Packet bytes", "long", "Stop once this many packet bytes were written", "Stop")
    dialog.arg("snaplen", "Snap length", "unsigned", "Bytes kept per packet (0 = all)", "Stop", default=0)
    dialog.arg(
        "also-save",
        "Also save to",
        "fileselect",
        "A pcapng file that also gets every packet Wireshark is shown (written when the capture ends)",
        "Output",
        mustexist="false",
    )
    return dialog.lines
