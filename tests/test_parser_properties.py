"""Property tests: hostile names survive render (textfmt + layouts) -> parse unchanged, in old and new
table styles; and randomly damaged output either parses or raises ParseError, never anything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from golden_util import (
    command_output,
    render_net_stats,
    render_nic_list,
    render_portgroups,
    render_standard_switches,
    render_vm_list,
    render_vm_ports,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.errors import ParseError
from esxcap.esxi.models import NetStatsPort, Nic, PortGroup, StandardSwitch, VmEntry, VmPort
from esxcap.esxi.parsers import (
    parse_dvs_list,
    parse_ip_interface_list,
    parse_ipv4_get,
    parse_net_stats,
    parse_nic_list,
    parse_portgroups,
    parse_standard_switches,
    parse_system_version,
    parse_vm_list,
    parse_vm_port_list,
    parse_vmware_vl,
)

SETTINGS = settings(max_examples=150, deadline=None)
# Only these end a line in host output; other separators (U+2028, U+0085, form feed) are name characters.
LINE_BREAKS = "\n\r"
HOSTILE = [
    "web 01",
    "it's",
    'say "hi"',
    "$(reboot)",
    "a;b && c | d",
    "`id`",
    "ウェブサーバー 本番",
    "x" * 200,
    "two  spaces",
    "-- dashes --",
    "Key: Value",
    "日本語",
    "%s %d {}",
    "line\u2028separator\x85next\x0cpage",
]

# Names as hosts print them: at least one character, no line breaks, no surrounding whitespace.
line_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS)
names = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(line_chars, min_size=1, max_size=200).filter(lambda s: s == s.strip()),
)
list_items = names.filter(lambda s: ", " not in s)
maybe_text = st.one_of(st.just(""), names)
networks = st.lists(list_items, max_size=4).map(tuple)
u32s = st.integers(0, 0xFFFFFFFF)
small = st.integers(0, 100000)
versions = st.sampled_from([(5, 5, 0), (6, 7, 0), (7, 0, 1), (7, 0, 2), (8, 0, 3), (9, 0, 0)])


@SETTINGS
@given(st.lists(st.builds(VmEntry, small, names, small, networks)), versions)
def test_vm_list_round_trip(vms: list[VmEntry], version: tuple[int, ...]) -> None:
    assert parse_vm_list(render_vm_list(vms, version)) == tuple(vms)


@st.composite
def nics(draw: st.DrawFn, old: bool) -> Nic:
    return Nic(
        name=draw(names),
        pci_device=draw(maybe_text),
        driver=draw(maybe_text),
        admin_status=None if old else draw(maybe_text),
        link_status=draw(maybe_text),
        speed_mbps=draw(small),
        duplex=draw(maybe_text),
        mac=draw(names),
        mtu=draw(small),
        description=draw(maybe_text),
    )


@SETTINGS
@given(st.data(), versions)
def test_nic_list_round_trip(data: st.DataObject, version: tuple[int, ...]) -> None:
    items = data.draw(st.lists(nics(old=version < (6,)), max_size=5))
    assert parse_nic_list(render_nic_list(items, version)) == tuple(items)


@SETTINGS
@given(st.lists(st.builds(PortGroup, names, names, small, st.integers(0, 4095))), versions)
def test_portgroup_list_round_trip(groups: list[PortGroup], version: tuple[int, ...]) -> None:
    assert parse_portgroups(render_portgroups(groups, version)) == tuple(groups)


def _absent(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


vm_ports = st.builds(
    VmPort,
    port_id=u32s,
    vswitch=names,
    portgroup=names,
    dvport_id=_absent(names),
    mac=names,
    ip=_absent(names.filter(lambda s: s != "0.0.0.0")),
    team_uplink=_absent(names),
    uplink_port_id=_absent(u32s),
    active_filters=_absent(names),
)


@SETTINGS
@given(st.lists(vm_ports, max_size=4), st.booleans())
def test_vm_port_list_round_trip(ports: list[VmPort], trailing_space: bool) -> None:
    assert parse_vm_port_list(render_vm_ports(ports, trailing_space), 7) == tuple(ports)


switches = st.builds(
    StandardSwitch,
    name=names,
    num_ports=small,
    used_ports=small,
    configured_ports=small,
    mtu=small,
    cdp_status=names,
    uplinks=st.lists(list_items, max_size=3).map(tuple),
    portgroups=st.lists(list_items, max_size=4).map(tuple),
)


@SETTINGS
@given(st.lists(switches, max_size=3))
def test_standard_switch_list_round_trip(items: list[StandardSwitch]) -> None:
    assert parse_standard_switches(render_standard_switches(items)) == tuple(items)


# ClientName runs to the end of the line: anything without a line break, surrounding spaces included.
clients = st.one_of(
    st.sampled_from(["NSX Manager.eth0", "web 01.eth1", " lead", "trail ", ""]),
    st.text(line_chars, max_size=80),
)
macs = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
switch_names = names.filter(lambda s: len(s) < 40)
net_stats_ports = st.builds(
    NetStatsPort, u32s, st.integers(0, 9), st.integers(0, 99), switch_names, macs, clients
)


@SETTINGS
@given(st.lists(net_stats_ports, max_size=5))
def test_net_stats_round_trip(ports: list[NetStatsPort]) -> None:
    assert parse_net_stats(render_net_stats(ports)) == tuple(ports)


# --- damaged output ---

Parse = Callable[[str], object]
VERSION_GET = "   Product: VMware ESXi\n   Version: 9.0.0\n   Build: Releasebuild-1\n   Update: 0\n"
DAMAGE_TARGETS: list[tuple[Parse, str]] = [
    (parse_vm_list, command_output("esxcli_network_vm_list_esxi67.txt")),
    (parse_vm_list, command_output("esxcli_network_vm_list_esxi703_build24784741.txt")),
    (parse_nic_list, command_output("esxcli_network_nic_list_esxi67_build8169922.txt")),
    (parse_nic_list, command_output("esxcli_network_nic_list_esxi8x.txt")),
    (parse_ipv4_get, command_output("esxcli_network_ip_interface_ipv4_get_esxi8x.txt")),
    (parse_portgroups, command_output("esxcli_network_vswitch_standard_portgroup_list_esxi8x.txt")),
    (parse_vm_port_list, command_output("esxcli_network_vm_port_list_esxi703_two_vnics.txt")),
    (parse_ip_interface_list, command_output("esxcli_network_ip_interface_list_esxi67plus.txt")),
    (parse_standard_switches, command_output("esxcli_network_vswitch_standard_list_esxi67_two.txt")),
    (parse_dvs_list, command_output("esxcli_network_vswitch_dvs_vmware_list_esxi900.txt")),
    (parse_net_stats, command_output("net-stats_-l_esxi8_nsxt.txt")),
    (parse_system_version, VERSION_GET),
    (parse_vmware_vl, "VMware ESXi 7.0.3 build-24784741\nVMware ESXi 7.0 Update 3\n"),
]
edits = st.lists(
    st.tuples(st.booleans(), st.floats(0, 1, exclude_max=True), st.sampled_from(" -:\n\t x1,\u3000")),
    min_size=1,
    max_size=6,
)


def _damage(text: str, changes: list[tuple[bool, float, str]]) -> str:
    for insert, where, char in changes:
        pos = int(where * (len(text) + 1))
        text = text[:pos] + char + text[pos:] if insert else text[:pos] + text[pos + 1 :]
    return text


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DAMAGE_TARGETS), edits)
def test_damaged_output_parses_or_raises_parse_error(target: tuple[Parse, str], changes: list[Any]) -> None:
    parse, text = target
    try:
        parse(_damage(text, changes))
    except ParseError as error:
        assert error.line_no >= 0
        assert error.command
