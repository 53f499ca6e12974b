"""The simulator's renderers against the verbatim ESXi samples (byte for byte), its port numbering, and
the topology loader's errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import fixture_text

from esxcap.errors import ConfigError
from esxcap.sim import load_topology, topology_from_data
from esxcap.sim.programs import host_programs
from esxcap.sim.shell import Output, Shell
from esxcap.sim.topology import Host

PROMPT = re.compile(r"^(\[root@[^\]]*\] |~ # )?(esxcli|net-stats|vmware) .*\n")


def sample(name: str) -> str:
    """A fixture without its leading prompt/command line."""
    return PROMPT.sub("", fixture_text(name), count=1)


def version_samples() -> dict[str, str]:
    """`esxcli system version get` blocks of the multi-sample fixture, keyed by version + build."""
    out = {}
    for chunk in fixture_text("esxcli_system_version_get_samples.txt").split("\n## ")[0:]:
        lines = [line for line in chunk.splitlines() if line.startswith("   ")]
        text = "".join(line + "\n" for line in lines)
        version = re.search(r"Version: (\S+)", text)
        build = re.search(r"Releasebuild-(\d+)", text)
        assert version and build
        out[f"{version[1]}-{build[1]}"] = text
    return out


def make_host(version: str, build: str = "1000", **fields: Any) -> Host:
    data = {"hosts": {"h": {"version": version, "build": build, **fields}}}
    return topology_from_data(data, "<test>").hosts[0]


def run(host: Host, command: str) -> Output:
    return Shell(host_programs(host)).run(command)


def stdout(host: Host, command: str) -> str:
    out = run(host, command)
    assert out.status == 0, out.stream(2)
    return out.stream(1).decode()


def uplink(name: str, pci: str, driver: str, mac: str, desc: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "pci": pci, "driver": driver, "mac": mac, "description": desc, **kw}


BCM = "Broadcom Corporation NetXtreme BCM5719 Gigabit Ethernet"
X540 = "Intel(R) Ethernet Controller X540-AT2"


def test_nic_list_67_old_style() -> None:
    uplinks = [
        uplink(f"vmnic{i}", f"0000:02:00.{i}", "ntg3", f"20:67:7c:d9:a1:6{c}", BCM, link=link)
        for i, (c, link) in enumerate(zip("cdef", ["Up", "Up", "Down", "Down"], strict=True))
    ]
    host = make_host("6.7.0", "8169922", uplinks=uplinks)
    assert stdout(host, "esxcli network nic list") == sample(
        "esxcli_network_nic_list_esxi67_build8169922.txt"
    )


def test_nic_list_8x_new_style() -> None:
    uplinks = [
        uplink("vmnic0", "0000:03:00.0", "ixgben", "a4:bf:01:4e:37:14", X540, speed=10000),
        uplink("vmnic1", "0000:03:00.1", "ixgben", "a4:bf:01:4e:37:15", X540, link="Down"),
    ]
    host = make_host("8.0.2", "22380479", uplinks=uplinks)
    assert stdout(host, "esxcli network nic list") == sample("esxcli_network_nic_list_esxi8x.txt")


def test_nic_list_702_and_900() -> None:
    i210 = "Intel Corporation I210 Gigabit Network Connection"
    host = make_host("7.0.2", uplinks=[
        uplink("vmnic0", "0000:04:00.0", "igbn", "04:d4:c4:5a:e2:78", i210),
        uplink("vmnic1", "0000:05:00.0", "igbn", "04:d4:c4:5a:e2:77", i210),
    ])  # fmt: skip
    assert stdout(host, "esxcli network nic list") == sample("esxcli_network_nic_list_esxi702.txt")
    vmx = "VMware Inc. vmxnet3 Virtual Ethernet Controller"
    host = make_host("9.0.0", uplinks=[
        uplink("vmnic0", "0000:02:01.0", "nvmxnet3", "00:50:56:b3:b9:89", vmx, speed=10000)
    ])  # fmt: skip
    assert stdout(host, "esxcli network nic list") == sample("esxcli_network_nic_list_esxi900.txt")


def test_nic_list_sorts_names_as_strings() -> None:
    uplinks = [
        uplink(f"vmnic{i}", f"0000:02:00.{i}", "ntg3", f"20:67:7c:d9:a1:{i:02x}", BCM) for i in (2, 10, 1)
    ]
    lines = stdout(make_host("8.0.2", uplinks=uplinks), "esxcli network nic list").splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["vmnic1", "vmnic10", "vmnic2"]


def test_vm_list_67() -> None:
    host = make_host(
        "6.7.0",
        "8169922",
        vswitches=[{"name": "vSwitch0", "portgroups": [{"name": "Server Network"}]}],
        vms=[
            {"name": "ubuntu_gns3", "world_id": 4455488,
             "vnics": [{"mac": "00:0c:29:00:00:01", "portgroup": "Server Network"}]},
            {"name": "gns3_vm", "world_id": 4455345, "vnics": [
                {"mac": "00:0c:29:00:00:02", "portgroup": "Server Network"},
                {"mac": "00:0c:29:00:00:03", "portgroup": "Server Network"}]},
            {"name": "stopped", "running": False,
             "vnics": [{"mac": "00:0c:29:00:00:04", "portgroup": "Server Network"}]},
        ],
    )  # fmt: skip
    assert stdout(host, "esxcli network vm list") == sample("esxcli_network_vm_list_esxi67.txt")


def test_vm_list_703_new_style() -> None:
    expected = sample("esxcli_network_vm_list_esxi703_build24784741.txt")
    rows = [line.split() for line in expected.splitlines()[2:]]
    vms = [
        {"name": name, "world_id": int(world), "vnics": [
            {"mac": f"00:0c:29:00:{i:02x}:01", "portgroup": "VM Network"},
            {"mac": f"00:0c:29:00:{i:02x}:02", "portgroup": "VM Network1"}]}
        for i, (world, name, *_rest) in enumerate(rows)
    ]  # fmt: skip
    host = make_host("7.0.3", "24784741", vms=vms, vswitches=[
        {"name": "vSwitch0", "portgroups": [{"name": "VM Network"}]},
        {"name": "vSwitch1", "portgroups": [{"name": "VM Network1"}]},
    ])  # fmt: skip
    assert stdout(host, "esxcli network vm list") == expected


def host_703_two_vnics() -> Host:
    return make_host(
        "7.0.3",
        "24784741",
        uplinks=[
            uplink("vmnic0", "0000:00:1f.6", "ne1000", "00:0c:29:aa:00:00", "I219-LM", port_index=5),
            uplink("vmnic1", "0000:01:00.0", "igc-community", "00:0c:29:aa:00:01", "I226-V", port_index=8),
        ],
        vswitches=[
            {"name": "vSwitch0", "uplinks": ["vmnic0"], "portgroups": [{"name": "VM Network"}]},
            {"name": "vSwitch1", "uplinks": ["vmnic1"], "portgroups": [{"name": "VM Network1"}]},
        ],
        vms=[{"name": "fnOS", "world_id": 2270066, "vnics": [
            {"mac": "00:0c:29:72:3f:e3", "portgroup": "VM Network", "port_index": 0x11},
            {"mac": "00:0c:29:72:3f:ed", "portgroup": "VM Network1", "port_index": 0x10}]}],
    )  # fmt: skip


def test_vm_port_list_703_two_vnics() -> None:
    host = host_703_two_vnics()
    expected = sample("esxcli_network_vm_port_list_esxi703_two_vnics.txt")
    assert stdout(host, "esxcli network vm port list -w 2270066") == expected
    assert stdout(host, "esxcli network vm port list --world-id=2270066") == expected
    assert stdout(host, "esxcli network vm port list --world-id 2270066") == expected


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("esxcli network vm port list -w 99", "Error: Unable to find a running VM with world ID 99\n"),
        ("esxcli network vm port list -w abc", "Error: While processing '-w'. Argument type mismatch. "
         "Expecting integer value. Got 'abc'\n"),
        ("esxcli network vm port list", "Error: Missing required parameter -w|--world-id\n"),
        ("esxcli network vm lsit", "Error: Unknown command or namespace network vm lsit\n"),
        ("esxcli network nic list --bogus", "Error: Invalid option --bogus\n"),
    ],
)  # fmt: skip
def test_esxcli_errors_go_to_stdout_with_status_1(command: str, message: str) -> None:
    out = run(host_703_two_vnics(), command)
    assert (out.stream(1).decode(), out.stream(2), out.status) == (message, b"", 1)


def test_unknown_program_is_not_found_127() -> None:
    out = run(host_703_two_vnics(), "esxclii network vm list")
    assert (out.stream(1), out.stream(2), out.status) == (b"", b"sh: esxclii: not found\n", 127)


def test_vswitch_standard_list_67_two() -> None:
    host = make_host(
        "6.7.0",
        "8169922",
        uplinks=[uplink(f"vmnic{i}", f"0000:02:00.{i}", "ntg3", f"20:67:7c:d9:a1:6{i}", BCM)
                 for i in range(4)],
        vswitches=[
            {"name": "vSwitch0", "uplinks": ["vmnic0"], "used_ports": 4,
             "portgroups": [{"name": "Management VMkernel"}]},
            {"name": "vSwitch1", "uplinks": ["vmnic3", "vmnic2", "vmnic1"], "used_ports": 10,
             "configured_ports": 1024, "portgroups": [{"name": "Server Network"}]},
        ],
    )  # fmt: skip
    expected = sample("esxcli_network_vswitch_standard_list_esxi67_two.txt")
    assert stdout(host, "esxcli network vswitch standard list") == expected


def host_8x_vswitch() -> Host:
    return make_host(
        "8.0.2",
        "22380479",
        uplinks=[uplink("vmnic0", "0000:03:00.0", "ixgben", "a4:bf:01:4e:37:14", X540, speed=10000)],
        vswitches=[{"name": "vSwitch0", "uplinks": ["vmnic0"], "used_ports": 4,
                    "portgroups": [{"name": "VM Network"}, {"name": "eno1"}]}],
        vmknics=[{"name": "vmk0", "mac": "a4:bf:01:4e:37:14", "ipv4": "93.115.27.203",
                  "gateway": "93.115.27.1", "portgroup": "eno1"}],
    )  # fmt: skip


def test_vswitch_standard_list_and_portgroups_8x() -> None:
    host = host_8x_vswitch()
    expected = sample("esxcli_network_vswitch_standard_list_esxi8x.txt")
    assert stdout(host, "esxcli network vswitch standard list") == expected
    expected = sample("esxcli_network_vswitch_standard_portgroup_list_esxi8x.txt")
    assert stdout(host, "esxcli network vswitch standard portgroup list") == expected


def test_ipv4_get_67_8x_900() -> None:
    assert stdout(host_8x_vswitch(), "esxcli network ip interface ipv4 get") == sample(
        "esxcli_network_ip_interface_ipv4_get_esxi8x.txt"
    )
    for version, name, ip, gateway, fixture in [
        ("6.7.0", "vmk1", "10.130.2.122", "10.130.2.1", "esxcli_network_ip_interface_ipv4_get_esxi67.txt"),
        ("9.0.0", "vmk0", "172.30.30.176", "172.30.30.1", "esxcli_network_ip_interface_ipv4_get_esxi900.txt"),
    ]:
        host = make_host(
            version,
            vswitches=[{"name": "vSwitch0", "portgroups": [{"name": "Management Network"}]}],
            vmknics=[{"name": name, "mac": "00:50:56:00:00:01", "ipv4": ip, "gateway": gateway,
                      "portgroup": "Management Network"}],
        )  # fmt: skip
        assert stdout(host, "esxcli network ip interface ipv4 get") == sample(fixture)


def test_ip_interface_list_67() -> None:
    host = make_host(
        "6.7.0",
        vswitches=[
            {"name": "vSwitch0", "portgroups": [{"name": "v4084unt-k"}]},
            {"name": "mgmt-sw", "portset_id": 6, "portgroups": [{"name": "v0002-m"}]},
        ],
        vmknics=[
            {"name": "vmk0", "mac": "52:54:00:ad:48:01", "ipv4": "10.0.0.1", "portgroup": "v4084unt-k",
             "port_index": 4},
            {"name": "vmk1", "mac": "00:50:56:60:e9:fc", "ipv4": "10.0.1.1", "portgroup": "v0002-m",
             "port_index": 0x6002},
        ],
    )  # fmt: skip
    expected = fixture_text("esxcli_network_ip_interface_list_esxi67plus.txt").split("\n", 1)[1]
    assert stdout(host, "esxcli network ip interface list") == expected


def test_dvs_list_900_shape() -> None:
    host = make_host(
        "9.0.0",
        "24755229",
        dvswitches=[{"name": "VDS-Prod", "vds_id": "50 33 8c 87 5f 05 cd 73-bc 4f 7c 4f 55 23 fc f8",
                     "used_ports": 1, "portgroups": [
                         {"name": "pg", "key": "dvportgroup-4024", "ports": ["0", "1"]}]}],
    )  # fmt: skip
    assert stdout(host, "esxcli network vswitch dvs vmware list") == sample(
        "esxcli_network_vswitch_dvs_vmware_list_esxi900.txt"
    )


def test_net_stats_8x_layout() -> None:
    """The NSX-T sample, less its `vdr-vdrPort` (an NSX-internal port the topology does not model)."""
    vmks = [
        ("vmk0", "00:50:56:01:10:01"),
        ("vmk1", "00:50:56:63:68:04"),
        ("vmk10", "00:50:56:63:f6:da"),
        ("vmk11", "00:50:56:6a:15:43"),
        ("vmk50", "00:50:56:67:94:82"),
    ]
    vedge = [
        "00:50:56:a2:f9:3d",
        "00:50:56:a2:c7:1e",
        "00:50:56:a2:38:94",
        "00:50:56:a2:26:57",
        "00:50:56:a2:ec:46",
    ]
    host = make_host(
        "8.0.2",
        uplinks=[uplink("vmnic0", "0000:03:00.0", "ixgben", "00:50:56:01:10:01", X540, port_index=6),
                 uplink("vmnic1", "0000:03:00.1", "ixgben", "00:50:56:01:20:01", X540, port_index=8)],
        dvswitches=[{"name": "nsx-vds", "vds_id": "50 33 8c 87 5f 05 cd 73-bc 4f 7c 4f 55 23 fc f8",
                     "portset_id": 4, "uplinks": ["vmnic0", "vmnic1"],
                     "portgroups": [{"name": "overlay", "key": "dvportgroup-1",
                                     "ports": [str(n) for n in range(20)]}]}],
        vmknics=[{"name": n, "mac": m, "ipv4": f"10.0.0.{i + 1}", "portgroup": "overlay",
                  "port_index": 10 + i} for i, (n, m) in enumerate(vmks)],
        vms=[{"name": "infravisor-pod", "vnics": [
                 {"mac": "00:0c:29:07:d0:b6", "portgroup": "overlay", "port_index": 16}]},
             {"name": "vedge3", "vnics": [{"mac": m, "portgroup": "overlay", "port_index": 21 - i}
                                          for i, m in enumerate(vedge)]}],
    )  # fmt: skip
    expected = "".join(
        line
        for line in fixture_text("net-stats_-l_esxi8_nsxt.txt").splitlines(keepends=True)
        if "vdr-vdrPort" not in line
    )
    assert stdout(host, "net-stats -l") == expected


@pytest.mark.parametrize(("version", "build", "update", "patch"), [
    ("5.5.0", "3248547", "3", "0"), ("6.5.0", "5969303", "1", "26"), ("6.7.0", "8169922", "0", "0"),
    ("6.7.0", "14320388", "3", "73"), ("7.0.3", "24784741", "3", "150"), ("8.0.2", "22380479", "2", "0"),
    ("9.0.0", "24755229", "0", "0"),
])  # fmt: skip
def test_system_version_get(version: str, build: str, update: str, patch: str) -> None:
    host = make_host(version, build, update=update, patch=patch)
    assert stdout(host, "esxcli system version get") == version_samples()[f"{version}-{build}"]


def test_vmware_v_vl_and_uname() -> None:
    old = make_host("5.5.0", "3248547", update="3", build_date="Nov 17 2015 21:38:51")
    assert stdout(old, "vmware -v") == "VMware ESXi 5.5.0 build-3248547\n"
    assert stdout(old, "vmware -vl") == "VMware ESXi 5.5.0 build-3248547\nVMware ESXi 5.5.0 Update 3\n"
    new = make_host("7.0.3", "24784741", update="3")
    assert stdout(new, "vmware -vl") == "VMware ESXi 7.0.3 build-24784741\nVMware ESXi 7.0 Update 3\n"
    assert stdout(new, "vmware -l") == "VMware ESXi 7.0 Update 3\n"
    assert stdout(old, "uname -a") == (
        "VMkernel h 5.5.0 #1 SMP Release build-3248547 Nov 17 2015 21:38:51 x86_64 GNU/Linux\n"
    )
    assert stdout(make_host("8.0.2", "22380479", build_date="Sep  4 2023 15:00:49"), "uname -a") == (
        "VMkernel h 8.0.2 #1 SMP Release build-22380479 Sep  4 2023 15:00:49 x86_64 x86_64 x86_64 ESXi\n"
    )
    assert stdout(old, "hostname") == "h\n"
    assert run(old, "vmware -x").status == 1


# --- port numbering -----------------------------------------------------------------------------------------


def test_port_ids_and_uplink_bit_by_version() -> None:
    topology = load_topology()
    for host in topology.hosts:
        ids = [p.port_id for p in host.ports]
        assert len(set(ids)) == len(ids), host.name
        for port in host.ports:
            portset = next(s.portset_id for s in (*host.vswitches, *host.dvswitches) if s.name == port.switch)
            assert port.port_id & 0x7FFFFFFF == portset << 24 | (port.port_id & 0xFFFFFF)
            wants_bit = port.kind == "uplink" and host.version_tuple >= (7,)
            assert bool(port.port_id & 1 << 31) == wants_bit, (host.name, port)
    assert load_topology() == topology  # deterministic


def test_default_topology_has_what_the_demo_needs() -> None:
    topology = load_topology()
    versions = {h.version_tuple[:2] for h in topology.hosts}
    assert {(5, 5), (6, 7), (8, 0)} <= versions
    running = [vm for h in topology.hosts for vm in h.running_vms()]
    assert len(running) >= 8
    names = {vm.name for vm in running}
    assert {"web 01", "データベース01"} <= names
    assert any(len(vm.vnics) >= 2 for vm in running)
    assert any(h.dvswitches for h in topology.hosts)
    assert all(h.vmknics and h.uplinks for h in topology.hosts)
    dvs_host = next(h for h in topology.hosts if h.dvswitches)
    assert any(p.dvport for p in dvs_host.ports if p.kind == "vnic")


def test_vnic_ports_carry_network_facts() -> None:
    host = load_topology().host("esx03")
    vm = next(v for v in host.vms if v.name == "app 03")
    ports = host.vnic_ports(vm)
    assert [(p.mac, p.portgroup, p.vlan, p.switch) for p in ports] == [
        ("00:50:56:a2:30:03", "dvpg-web", 110, "VDS-Prod"),
        ("00:50:56:a2:30:04", "dvpg-db", 120, "VDS-Prod"),
    ]
    assert [n.ip for n in vm.vnics] == ["10.110.0.13", "10.120.0.13"]


# --- loader errors ------------------------------------------------------------------------------------


def base(**host: Any) -> dict[str, Any]:
    switch = {"name": "vSwitch0", "portgroups": [{"name": "VM Network"}]}
    data: dict[str, Any] = {"version": "8.0.2", "build": "1", "vswitches": [switch]}
    data.update(host)
    return {"hosts": {"h1": data}}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (base(vms=[{"name": "a", "vnics": [{"mac": "nope", "portgroup": "VM Network"}]}]),
         "hosts.h1.vms[0].vnics[0].mac"),
        (base(vms=[{"name": "a", "vnics": [{"mac": "00:50:56:00:00:01", "portgroup": "Nope"}]}]),
         "hosts.h1.vms[0].vnics[0].portgroup"),
        (base(colour="blue"), "hosts.h1.colour"),
        (base(version="8.0"), "hosts.h1.version"),
        (base(vswitches=[{"name": "s", "portgroups": [{"name": "p", "vlan": 4096}]}]),
         "hosts.h1.vswitches[0].portgroups[0].vlan"),
        (base(vswitches=[{"name": "s", "uplinks": ["vmnic9"]}]), "hosts.h1.vswitches[0].uplinks"),
        (base(vmknics=[{"name": "vmk0", "mac": "00:50:56:00:00:01", "ipv4": "10.0.0.1",
                        "portgroup": "VM Network", "port_index": 7}],
              vms=[{"name": "a", "vnics": [{"mac": "00:50:56:00:00:02", "portgroup": "VM Network",
                                            "port_index": 7}]}]),
         "hosts.h1.vms[0].vnics[0].port_index"),
        (base(vms=[{"name": "a", "world_id": 5}, {"name": "b", "world_id": 5}]), "hosts.h1.vms[1].world_id"),
        ({"hosts": {"bad/name": {"version": "8.0.2", "build": "1"}}}, "hosts.bad/name"),
        ({"hosts": {}}, "hosts"),
    ],
)  # fmt: skip
def test_loader_errors_name_file_and_key(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        topology_from_data(data, "topo.yaml")
    assert str(info.value).startswith(f"topo.yaml: {where}: "), str(info.value)


def test_dvport_exhaustion_and_reuse_are_errors() -> None:
    dvs = [{"name": "d", "vds_id": "50 33 8c 87 5f 05 cd 73-bc 4f 7c 4f 55 23 fc f8",
            "portgroups": [{"name": "dpg", "key": "dvportgroup-1", "ports": ["1"]}]}]  # fmt: skip
    vnic = {"mac": "00:50:56:00:00:01", "portgroup": "dpg"}
    with pytest.raises(ConfigError, match=r"vms\[1\]\.vnics\[0\]\.portgroup: DVPortgroup 'dpg' has no free"):
        topology_from_data(base(dvswitches=dvs, vms=[{"name": "a", "vnics": [vnic]},
                                                     {"name": "b", "vnics": [vnic]}]), "t")  # fmt: skip
    with pytest.raises(ConfigError, match=r"dvport: DVPort '2' is not a port of 'dpg'"):
        topology_from_data(base(dvswitches=dvs, vms=[{"name": "a", "vnics": [{**vnic, "dvport": "2"}]}]), "t")


def test_load_topology_file_errors(tmp_path: Any) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("hosts: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_topology(bad)
    with pytest.raises(ConfigError, match="cannot read topology file"):
        load_topology(tmp_path / "missing.yaml")
