"""Which way a packet goes at a pktcap-uw capture point, seen from the vSwitch port (pure).

pktcap-uw names its points from the port's side (PortInput: into the port; REFERENCE.md §1.5). esxcap
marks each packet of a one-direction stream with that direction (pcapng epb_flags,
`frame.packet_flags_direction` in Wireshark):

| point                         | flag     | the packet goes                                   |
|-------------------------------|----------|---------------------------------------------------|
| VnicTx (Vmxnet3Tx)            | inbound  | from the VM's vNIC into its switch port (VM sends) |
| VnicRx (Vmxnet3Rx)            | outbound | from the switch port to the VM's vNIC (VM gets)   |
| PortInput                     | inbound  | from the vNIC / vmknic / uplink into its port     |
| PortOutput                    | outbound | from the port to the vNIC / vmknic / uplink       |
| UplinkRcv, UplinkRcvKernel    | inbound  | from the wire into the uplink's port              |
| UplinkSnd, UplinkSndKernel    | outbound | from the uplink's port to the wire                |

So `--dir in` (what the VM or vmknic receives) is *outbound* at its port, `--dir out` *inbound*; on an
uplink `--dir in` (from the wire) is inbound. Every other point (DVFilter, Drop, Etherswitch*, Tcpip*,
VDR, overlay...) has no documented direction, nor has a selector's default point (no `--capture`):
their packets get no flag. A stream that holds both directions (`--dir 2`, `--capture VnicRx,VnicTx`)
gets none either: pktcap-uw's stream does not say per packet which point saw it (no public sample of
its `--ng` output shows a per-packet point; its help says `--ng` works only when writing a file), and
the interface description says that the directions are mixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

PacketDirection = Literal["inbound", "outbound"]

_Way = tuple[PacketDirection, str]
_VNIC_SENDS: _Way = ("inbound", "from the VM's vNIC into its switch port")
_VNIC_GETS: _Way = ("outbound", "from the switch port to the VM's vNIC")
_WIRE_IN: _Way = ("inbound", "from the wire into the uplink's port")
_WIRE_OUT: _Way = ("outbound", "from the uplink's port to the wire")
_POINTS: dict[str, _Way] = {
    "vnictx": _VNIC_SENDS,
    "vmxnet3tx": _VNIC_SENDS,
    "vnicrx": _VNIC_GETS,
    "vmxnet3rx": _VNIC_GETS,
    "portinput": ("inbound", "into the switch port from its vNIC, vmknic or uplink"),
    "portoutput": ("outbound", "out of the switch port to its vNIC, vmknic or uplink"),
    "uplinkrcv": _WIRE_IN,
    "uplinkrcvkernel": _WIRE_IN,
    "uplinksnd": _WIRE_OUT,
    "uplinksndkernel": _WIRE_OUT,
}
"""Each point with a known direction (lower case: pktcap-uw's points are matched in any case): its flag
and the way its packets go."""


def _directions(points: Sequence[str], dir_code: int | None) -> set[PacketDirection | None]:
    if not points or dir_code == 2:
        return {None}
    return {_POINTS.get(point.lower(), (None, ""))[0] for point in points}


def packet_direction(points: Sequence[str], dir_code: int | None) -> PacketDirection | None:
    """The direction every packet of a stream at `points` (pktcap-uw `--capture`; empty: the selector's
    default point) with `--dir dir_code` has at its port; None when unknown or mixed."""
    found = _directions(points, dir_code)
    return found.pop() if len(found) == 1 else None


def mixes_directions(points: Sequence[str], dir_code: int | None) -> bool:
    """Whether one stream holds both directions (`--dir 2`, or an inbound and an outbound point)."""
    return dir_code == 2 or {"inbound", "outbound"} <= _directions(points, None)


def direction_note(points: Sequence[str], dir_code: int | None) -> str:
    """What the interface description says about direction: the flag its packets carry, or that both
    directions are mixed without a flag; empty when the points say nothing about direction."""
    if mixes_directions(points, dir_code):
        where = ",".join(points) if points else "--dir 2"
        return f"in and out mixed ({where}): pktcap-uw does not say which way each packet went"
    direction = packet_direction(points, dir_code)
    if direction is None:
        return ""
    ways = sorted({_POINTS[point.lower()][1] for point in points})
    return f"packets flagged {direction}: {'; '.join(ways)}"
