"""The discovery parsers on the verbatim host samples (golden results, byte-exact re-rendering through the
layouts) and on malformed output (ParseError at the right line, never a wrong value)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from golden_util import (
    FIXTURES,
    check_golden,
    command_output,
    render_dvs_list,
    render_ip_interfaces,
    render_ipv4_get,
    render_net_stats,
    render_nic_list,
    render_portgroups,
    render_standard_switches,
    render_system_version,
    render_vm_list,
    render_vm_ports,
    version_samples,
)

from esxcap.errors import ParseError
from esxcap.esxi import layouts
from esxcap.esxi.models import EsxiVersion
from esxcap.esxi.parsers import (
    COMMANDS,
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
    vm_port_list_argv,
)

Parse = Callable[[str], Any]
Render = Callable[[Any], str]


def _tables(render: Callable[[Any, layouts.Version], str], version: layouts.Version) -> Render:
    return lambda result: render(result, version)


# fixture -> (parser, renderer back to the same text)
SINGLE: dict[str, tuple[Parse, Render]] = {
    "esxcli_network_vm_list_esxi67.txt": (parse_vm_list, _tables(render_vm_list, (6, 7, 0))),
    "esxcli_network_vm_list_esxi703_build24784741.txt": (parse_vm_list, _tables(render_vm_list, (7, 0, 3))),
    "esxcli_network_nic_list_esxi67_build8169922.txt": (parse_nic_list, _tables(render_nic_list, (6, 7, 0))),
    "esxcli_network_nic_list_esxi702.txt": (parse_nic_list, _tables(render_nic_list, (7, 0, 2))),
    "esxcli_network_nic_list_esxi703_build24784741.txt": (
        parse_nic_list,
        _tables(render_nic_list, (7, 0, 3)),
    ),
    "esxcli_network_nic_list_esxi8x.txt": (parse_nic_list, _tables(render_nic_list, (8, 0, 0))),
    "esxcli_network_nic_list_esxi900.txt": (parse_nic_list, _tables(render_nic_list, (9, 0, 0))),
    "esxcli_network_ip_interface_ipv4_get_esxi67.txt": (parse_ipv4_get, _tables(render_ipv4_get, (6, 7, 0))),
    "esxcli_network_ip_interface_ipv4_get_esxi8x.txt": (parse_ipv4_get, _tables(render_ipv4_get, (8, 0, 0))),
    "esxcli_network_ip_interface_ipv4_get_esxi900.txt": (parse_ipv4_get, _tables(render_ipv4_get, (9, 0, 0))),
    "esxcli_network_ip_interface_list_esxi67plus.txt": (
        parse_ip_interface_list,
        _tables(render_ip_interfaces, (6, 7, 0)),
    ),
    # This source lost the trailing space after empty values (REFERENCE §3.2).
    "esxcli_network_vm_port_list_esxi703_two_vnics.txt": (
        parse_vm_port_list,
        lambda result: render_vm_ports(result, empty_trailing_space=False),
    ),
    "esxcli_network_vswitch_standard_list_esxi67_two.txt": (
        parse_standard_switches,
        render_standard_switches,
    ),
    "esxcli_network_vswitch_standard_list_esxi8x.txt": (parse_standard_switches, render_standard_switches),
    "esxcli_network_vswitch_standard_portgroup_list_esxi8x.txt": (
        parse_portgroups,
        _tables(render_portgroups, (8, 0, 0)),
    ),
    "esxcli_network_vswitch_dvs_vmware_list_esxi900.txt": (parse_dvs_list, render_dvs_list),
    "net-stats_-l_esxi8_nsxt.txt": (parse_net_stats, render_net_stats),
}
VERSION_FIXTURE = "esxcli_system_version_get_samples.txt"
# Samples of commands that discovery does not parse (formatter variants, pktcap-uw, ssh).
NOT_DISCOVERY = {
    "esxcli_formatter_csv_samples.txt",
    "esxcli_formatter_keyvalue_samples.txt",
    "esxcli_formatter_xml_network_nic_list_esxi8_TRUNCATED.xml",
    "esxcli_formatter_xml_vm_process_list_esxi8_TRUNCATED.xml",
    "ps_-c_-J_esxi7-8_excerpt.bin",
    "ssh_login_banner_esxi67.txt",
    "ssh_login_banner_esxi8x.txt",
    "sshd_config_esxi802_fips_active_directives.txt",
}


def test_every_fixture_is_covered_or_listed_as_not_discovery() -> None:
    names = {p.name for p in FIXTURES.iterdir()}
    pktcap = {n for n in names if n.startswith("pktcap-uw_")}
    assert names - pktcap == set(SINGLE) | {VERSION_FIXTURE} | NOT_DISCOVERY


@pytest.mark.parametrize("fixture", sorted(SINGLE))
def test_fixture_parses_to_golden(fixture: str) -> None:
    parser, _ = SINGLE[fixture]
    check_golden(fixture, {"output": parser(command_output(fixture))})


@pytest.mark.parametrize("fixture", sorted(SINGLE))
def test_layouts_rerender_fixture_byte_for_byte(fixture: str) -> None:
    parser, render = SINGLE[fixture]
    text = command_output(fixture)
    assert render(parser(text)) == text


def test_version_samples_parse_to_golden() -> None:
    parsers = {"vmware -v": parse_vmware_vl, "esxcli system version get": parse_system_version}
    results = {key: parsers[command](output) for key, (command, output) in version_samples().items()}
    assert len(results) == 9
    check_golden(VERSION_FIXTURE, dict(results))


def test_version_get_rerenders_byte_for_byte() -> None:
    for key, (command, output) in version_samples().items():
        if command == "esxcli system version get":
            assert render_system_version(parse_system_version(output)) == output, key


def test_vmware_vl_two_lines_and_its_layout() -> None:
    text = "VMware ESXi 7.0.3 build-24784741\nVMware ESXi 7.0 Update 3\n"
    version = parse_vmware_vl(text)
    assert version == EsxiVersion("VMware ESXi", "7.0.3", "24784741", update="3")
    assert layouts.format_vmware_vl(version) == text
    old = "VMware ESXi 6.5.0 build-14320405\nVMware ESXi 6.5.0 Update 3\n"
    assert layouts.format_vmware_vl(parse_vmware_vl(old)) == old
    ga = parse_vmware_vl("VMware ESXi 6.7.0 build-8169922\nVMware ESXi 6.7.0 GA\n")
    assert ga.update == "0"
    assert ga.version_tuple == (6, 7, 0)


def test_commands_cover_hostfacts_and_argv() -> None:
    assert COMMANDS["vms"][0] == ("esxcli", "network", "vm", "list")
    assert COMMANDS["netstats"][0] == ("net-stats", "-l")
    assert COMMANDS["version"][0] == ("vmware", "-vl")
    assert len(COMMANDS) == 10
    assert vm_port_list_argv(4455345) == ("esxcli", "network", "vm", "port", "list", "-w", "4455345")
    for argv, parser in COMMANDS.values():
        assert argv and callable(parser)


# --- version families ---


def test_table_style_switches_at_702() -> None:
    assert layouts.table_style((6, 7, 0)) == "old"
    assert layouts.table_style((7, 0, 1)) == "old"
    assert layouts.table_style((7, 0, 2)) == "new"
    assert layouts.table_style((9, 0, 0)) == "new"


def test_55_layouts_parse() -> None:
    nic = parse_nic_list(
        "Name    PCI Device    Driver  Link  Speed  Duplex  MAC Address         MTU  Description\n"
        "------  ------------  ------  ----  -----  ------  -----------------  ----  -----------\n"
        "vmnic0  0000:02:00.0  tg3     Up     1000  Full    00:50:56:01:02:03  1500  Broadcom\n"
    )
    assert (nic[0].admin_status, nic[0].link_status, nic[0].speed_mbps) == (None, "Up", 1000)
    ipv4 = parse_ipv4_get(
        "Name  IPv4 Address  IPv4 Netmask   IPv4 Broadcast  Address Type  DHCP DNS\n"
        "----  ------------  -------------  --------------  ------------  --------\n"
        "vmk0  172.16.0.10   255.255.255.0  172.16.0.255    STATIC           false\n"
    )
    assert (ipv4[0].address, ipv4[0].gateway, ipv4[0].dhcp_dns) == ("172.16.0.10", None, False)
    assert layouts.nic_list_columns((5, 5, 0)) is layouts.NIC_LIST_COLUMNS_55
    assert layouts.ipv4_get_columns((5, 5, 0)) is layouts.IPV4_GET_COLUMNS_55
    assert "Netstack Instance" not in layouts.ip_interface_fields((6, 5, 0))
    assert "Maintenance" in layouts.system_version_fields((9, 0, 0))
    assert "Patch" not in layouts.system_version_fields((5, 5, 0))


def test_empty_output_means_no_rows() -> None:
    assert parse_vm_list("") == ()
    assert parse_vm_list("World ID  Name  Num Ports  Networks\n--------  ----  ---------  --------\n") == ()
    assert parse_vm_port_list("", 4455345) == ()
    assert parse_dvs_list("") == ()


def test_names_with_spaces_in_net_stats_and_dvs_clients() -> None:
    row = f"{67108890:<16} {5:>4} {7:>7} {'vSwitch0':<16} {'00:50:56:aa:bb:cc':<17}  NSX Manager.eth0"
    ports = parse_net_stats(layouts.NET_STATS_HEADER + "\n" + row + "\n")
    assert ports[0].client_name == "NSX Manager.eth0"
    assert ports[0].switch_name == "vSwitch0"


def test_vds_backed_vmknic_keeps_vds_fields() -> None:
    text = command_output("esxcli_network_ip_interface_list_esxi67plus.txt")
    text = text.replace("VDS Name: N/A", "VDS Name: VDS-Prod", 1).replace("VDS Port: N/A", "VDS Port: 8", 1)
    vmk0 = parse_ip_interface_list(text.replace("Portgroup: v4084unt-k", "Portgroup: N/A"))[0]
    assert (vmk0.vds_name, vmk0.vds_port, vmk0.portgroup) == ("VDS-Prod", "8", None)


# --- malformed output: ParseError naming the right line ---

NIC = command_output("esxcli_network_nic_list_esxi8x.txt")
PORTS = command_output("esxcli_network_vm_port_list_esxi703_two_vnics.txt")
DVS = command_output("esxcli_network_vswitch_dvs_vmware_list_esxi900.txt")
VSWITCH = command_output("esxcli_network_vswitch_standard_list_esxi67_two.txt")
VM_LIST = command_output("esxcli_network_vm_list_esxi67.txt")


def _error(parse: Parse, text: str) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(text)
    return caught.value


def _line(text: str, line_no: int) -> str:
    return text.splitlines()[line_no - 1]


def test_shifted_column_is_an_error_at_its_row() -> None:
    lines = NIC.splitlines()
    lines[3] = lines[3].replace("vmnic1  ", "vmnic1   ", 1)
    error = _error(parse_nic_list, "\n".join(lines))
    assert (error.line_no, error.line) == (4, lines[3])
    assert error.command == "esxcli network nic list"


def test_row_shifted_left_is_an_error() -> None:
    lines = VM_LIST.splitlines()
    lines[2] = lines[2][1:]
    error = _error(parse_vm_list, "\n".join(lines))
    assert error.line_no == 3


def test_missing_dash_row() -> None:
    lines = NIC.splitlines()
    del lines[1]
    assert _error(parse_nic_list, "\n".join(lines)).line_no == 2


def test_unknown_columns() -> None:
    error = _error(parse_nic_list, NIC.replace("Duplex", "Duplx!"))
    assert error.line_no == 1
    assert "unknown columns" in error.reason


def test_truncated_table_row() -> None:
    cut = NIC[: NIC.index("Up           10000")]
    error = _error(parse_nic_list, cut)
    assert (error.line_no, error.line) == (3, cut.splitlines()[2])


def test_non_integer_cells() -> None:
    assert _error(parse_vm_list, VM_LIST.replace(" 4455345", "-4455345")).line_no == 4
    assert (
        _error(
            parse_portgroups,
            command_output("esxcli_network_vswitch_standard_portgroup_list_esxi8x.txt").replace(
                "       0\n", "    4096\n", 1
            ),
        ).line_no
        == 3
    )


def test_garbage_line_in_record_block() -> None:
    lines = PORTS.splitlines()
    lines.insert(4, "garbage")
    error = _error(parse_vm_port_list, "\n".join(lines))
    assert (error.line_no, error.line) == (5, "garbage")


def test_non_integer_and_oversized_port_ids() -> None:
    error = _error(
        lambda t: parse_vm_port_list(t, 42), PORTS.replace("Port ID: 100663312", "Port ID: 0x6000010")
    )
    assert (error.line_no, error.command) == (11, "esxcli network vm port list -w 42")
    error = _error(parse_vm_port_list, PORTS.replace("2248146952", "4294967296"))
    assert (error.line_no, error.line) == (18, "   Uplink Port ID: 4294967296")
    assert parse_vm_port_list(PORTS.replace("2248146952", "4294967295"))[1].uplink_port_id == 4294967295


def test_missing_and_duplicate_fields() -> None:
    error = _error(parse_vm_port_list, PORTS.replace("   MAC Address: 00:0c:29:72:3f:ed\n", ""))
    assert (error.line_no, "missing field 'MAC Address'" in error.reason) == (11, True)
    error = _error(
        parse_standard_switches, VSWITCH.replace("   MTU: 1500\n", "   MTU: 1500\n   MTU: 9000\n", 1)
    )
    assert (error.line_no, error.line) == (8, "   MTU: 9000")


def test_title_must_match_name() -> None:
    error = _error(parse_standard_switches, VSWITCH.replace("vSwitch1\n", "vSwitch9\n", 1))
    assert (error.line_no, error.line) == (16, "vSwitch9")


def test_bad_value_in_nested_dvport_names_its_line() -> None:
    lines = DVS.splitlines()
    assert lines[20] == "         In Use: false"
    lines[20] = "         In Use: maybe"
    error = _error(parse_dvs_list, "\n".join(lines) + "\n")
    assert (error.line_no, error.line) == (21, "         In Use: maybe")


def test_bad_booleans_and_versions() -> None:
    ipv4 = command_output("esxcli_network_ip_interface_ipv4_get_esxi8x.txt")
    assert _error(parse_ipv4_get, ipv4.replace("   false", "    True")).line_no == 3
    text = "   Product: VMware ESXi\n   Version: 8.0.2\n   Build: 22380479\n   Update: 2\n"
    assert _error(parse_system_version, text).line_no == 3
    assert _error(parse_system_version, "").reason == "empty output"
    two = text.replace("22380479", "Releasebuild-1") + "\n" + text
    assert _error(parse_system_version, two).line_no == 6


def test_vmware_vl_rejects_other_shapes() -> None:
    assert _error(parse_vmware_vl, "VMware ESXi 7.0.3 build-1\nVMware ESXi 8.0 Update 3\n").line_no == 2
    assert _error(parse_vmware_vl, "VMware ESXi 7.0.3 build-1\nVMware ESXi 7.0 Update three\n").line_no == 2
    assert _error(parse_vmware_vl, "VMware ESXi 7.0.3 build-1\nx\ny\n").line_no == 3
    assert _error(parse_vmware_vl, "-sh: vmware: not found\n").line_no == 1
    assert parse_vmware_vl("VMware ESXi 5.5.0 build-3248547\n").update is None


def test_net_stats_rejects_misplaced_columns() -> None:
    text = command_output("net-stats_-l_esxi8_nsxt.txt")
    assert _error(parse_net_stats, text.replace("PortNum ", "Port    ", 1)).line_no == 1
    lines = text.splitlines()
    lines[3] = lines[3].replace("  vmk0", " vmk0")
    assert _error(parse_net_stats, "\n".join(lines)).line_no == 4
    lines[3] = lines[3].replace("00:50:56:01:10:01", "00:50:56:01:10")
    assert _error(parse_net_stats, "\n".join(lines)).line_no == 4
    big = text.replace("2214592518      ", "42949672960     ", 1)
    assert _error(parse_net_stats, big).line_no == 2
