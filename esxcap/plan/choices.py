"""The targets a host offers in a picker (Wireshark's capture dialog): each VM's vNICs, the vmknics, the
uplinks and the Drop point, as (value, display) pairs; `request_for` turns a value back into the
`TargetRequest` that `capture --vm/--nic`, `--vmk`, `--uplink` or `--drop` builds (pure).

A value is `vm:N:NAME` (N = the vNIC's number, 1 = first), `vmk:NAME`, `uplink:NAME` or `drop`, with `%`,
braces, backslashes and control characters of names written as `%XX`: the extcap syntax cannot carry
braces, and hostile VM names must come back byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from esxcap.errors import UsageError
from esxcap.esxi.models import HostFacts
from esxcap.plan.planner import TargetRequest
from esxcap.plan.targets import vnic_label

_UNSAFE_IN_VALUE = re.compile(r"[%{}\\\x00-\x1f\x7f]")
_UNSAFE_IN_DISPLAY = re.compile(r"[{}\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Choice:
    """One target as a picker shows it: `value` is handed back, `display` is read by the admin."""

    value: str
    display: str


def encode(text: str) -> str:
    """`text` with the characters a value cannot carry written as `%XX` (undone by `request_for`)."""
    return _UNSAFE_IN_VALUE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), text)


def shown(text: str) -> str:
    """`text` safe to display inside extcap braces: braces, backslashes and control characters become '?'."""
    return _UNSAFE_IN_DISPLAY.sub("?", text)


def target_choices(facts: HostFacts) -> list[Choice]:
    """Every target of one host: VMs' vNICs (by name), then vmknics, uplinks, and the Drop point."""
    choices = []
    for vm in sorted(facts.vms, key=lambda v: v.entry.name.casefold()):
        for index, port in enumerate(vm.ports):
            nic = vnic_label(facts, vm, index)
            ip = f" {port.ip}" if port.ip else ""
            choices.append(
                Choice(
                    f"vm:{index + 1}:{encode(vm.entry.name)}",
                    shown(f"VM {vm.entry.name} {nic} ({port.mac}{ip}, {port.portgroup})"),
                )
            )
    for iface in facts.ip_interfaces:
        where = iface.portgroup or iface.vds_name or iface.portset or "-"
        choices.append(
            Choice(f"vmk:{encode(iface.name)}", shown(f"vmknic {iface.name} ({iface.mac}, {where})"))
        )
    for uplink in facts.nics:
        choices.append(
            Choice(
                f"uplink:{encode(uplink.name)}",
                shown(f"uplink {uplink.name} ({uplink.driver}, link {uplink.link_status})"),
            )
        )
    choices.append(Choice("drop", "Dropped packets (the Drop point)"))
    return choices


def request_for(value: str) -> TargetRequest:
    """The target request a choice's value stands for; a value no picker offered is a UsageError."""
    kind, _, rest = value.partition(":")
    if kind == "vm":
        number, _, name = rest.partition(":")
        if number.isdigit() and int(number) >= 1 and name:
            return TargetRequest("vm", unquote(name), nic=number)
    elif kind == "vmk" and rest:
        return TargetRequest("vmk", unquote(rest))
    elif kind == "uplink" and rest:
        return TargetRequest("uplink", unquote(rest))
    elif kind == "drop" and not rest:
        return TargetRequest("drop")
    raise UsageError(
        f"target {value!r} is not one esxcap offers",
        "pick a target in the capture options (reload the list if the host changed)",
    )
