"""What real hosts print that esxcap must read rather than refuse: stray lines, refused rows, VMs that go
away mid-discovery, bare net-stats ClientNames, odd `pktcap-uw -A` listings, 5.5's trailer, and `--rcf`
expressions. Pure readers first, then the real CLI against simulated hosts set up to print each of them.
"""

from __future__ import annotations

import copy
import ipaddress
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import CliResult, esxcap, isolated_env
from conftest import MakeSim

from esxcap.errors import ParseError
from esxcap.esxi import parsers
from esxcap.esxi.facts import vnic_client
from esxcap.esxi.parsers.lenient import read_leniently
from esxcap.pcap import CaptureFile
from esxcap.sim import pktcap
from esxcap.sim.frames import Fields, fields
from esxcap.sim.loader import topology_from_data
from esxcap.sim.programs import STRAY_LINE, host_programs
from esxcap.sim.rcf import RcfError, compile_filter
from esxcap.sim.render import ODD_NET_STATS_ROW

DEFAULT = yaml.safe_load(
    resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
)
STRAY = STRAY_LINE.strip()


def topology(**faults: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(DEFAULT)
    for host, host_faults in faults.items():
        data["hosts"][host]["faults"] = host_faults
    return data


def rendered(host: str, argv: tuple[str, ...], **faults: Any) -> str:
    """What a simulated host of the default topology prints for argv (stdout and stderr, as `2>&1`)."""
    sim_host = next(h for h in topology_from_data(topology(**{host: faults}), "t").hosts if h.name == host)
    output = host_programs(sim_host)(list(argv))
    assert output is not None
    return b"".join(data for _, data in output.chunks).decode()


# --- pure: the lenient reader ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vms", "nics", "ip_interfaces", "ipv4", "standard_switches", "netstats"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_stray_message_line_is_skipped_with_a_warning(name: str, where: str) -> None:
    argv, parser = parsers.COMMANDS[name]
    clean = rendered("esx02", argv)
    text = STRAY + "\n" + clean if where == "before" else clean + STRAY + "\n"
    with pytest.raises(ParseError):
        parser(text)
    heading = {"vms": 2, "nics": 2, "ipv4": 2, "netstats": 1}.get(name, 0)
    value, warnings = read_leniently(text, parser, heading_lines=heading)
    assert value == parser(clean)
    [warning] = warnings
    assert warning.startswith("skipped line ") and "a message, not output" in warning and STRAY in warning


def test_a_net_stats_row_that_does_not_re_render_is_skipped_and_the_others_kept() -> None:
    text = rendered("esx03", ("net-stats", "-l"), net_stats_odd_row=True)
    assert text.rstrip("\n").endswith(ODD_NET_STATS_ROW)
    with pytest.raises(ParseError):
        parsers.parse_net_stats(text)
    ports, warnings = read_leniently(text, parsers.parse_net_stats, heading_lines=1)
    clean = parsers.parse_net_stats(rendered("esx03", ("net-stats", "-l")))
    assert ports == clean and len(ports) > 5
    [warning] = warnings
    assert "columns" in warning or "expected" in warning
    assert ODD_NET_STATS_ROW.strip()[:40] in warning


def test_what_stays_unreadable_still_raises() -> None:
    text = "Warning: x\nthis is not a table at all\nnor is this\n"
    with pytest.raises(ParseError):
        read_leniently(text, parsers.parse_nic_list, heading_lines=2)
    header_only_garbage = "garbage header\n" + rendered("esx02", ("net-stats", "-l"))
    with pytest.raises(ParseError):
        read_leniently(header_only_garbage, parsers.parse_net_stats, heading_lines=1)


def test_net_stats_client_names_with_and_without_the_eth_suffix() -> None:
    vms = ("gns3_vm", "web 01", "db.eth1", "db")
    assert vnic_client("gns3_vm", vms) == ("gns3_vm", 0)
    assert vnic_client("gns3_vm.eth1", vms) == ("gns3_vm", 1)
    assert vnic_client("web 01.eth12", vms) == ("web 01", 12)
    assert vnic_client("db.eth1", vms) == ("db.eth1", 0)
    assert vnic_client("db.eth2", vms) == ("db", 2)
    assert vnic_client("vmk0", vms) is None and vnic_client("other.eth0", vms) is None
    assert vnic_client("gns3_vm.eth01", vms) is None


# --- the real CLI against simulated hosts ---------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def run(st: Any, env: dict[str, str], *args: str) -> CliResult:
    return esxcap("-i", str(st.sim.inventory_path), *args, env=env)


SURPRISES = {
    "esx02": {
        "vms_gone": ["web 01"],
        "stray_lines": ["esxcli network nic list", "net-stats -l", "esxcli network ip interface list"],
        "net_stats_bare_names": True,
    },
    "esx03": {"net_stats_odd_row": True, "points_listing": "noisy"},
}


def test_discover_keeps_hosts_that_surprise_it_and_says_what_it_skipped(make_sim: MakeSim, env) -> None:
    st = make_sim(topology(**SURPRISES))
    clean = make_sim(topology())
    result = run(st, env, "discover", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["errors"] == []
    hosts = {h["host"]: h for h in doc["hosts"]}
    expected = {h["host"]: h for h in run(clean, env, "discover", "--json").json()["hosts"]}
    esx02, esx03 = hosts["esx02"], hosts["esx03"]
    # The VM that powered off is left out, with a warning naming it; the rest is all there.
    assert [vm["name"] for vm in esx02["vms"]] == [v["name"] for v in expected["esx02"]["vms"][1:]]
    gone = [w for w in esx02["warnings"] if "web 01" in w]
    assert len(gone) == 1 and "left out" in gone[0] and "vm port list -w 4455345" in gone[0]
    for key in ("uplinks", "vmknics", "switches"):
        assert esx02[key] == expected["esx02"][key], key
    stray = [w for w in esx02["warnings"] if STRAY in w]
    assert len(stray) == 3 and all("a message, not output" in w for w in stray)
    # Bare ClientName for gns3_vm's first vNIC: still its eth0 on the right port.
    bare = [p for p in esx02["ports"] if p["client"] == "gns3_vm"]
    [gns3] = [vm for vm in esx02["vms"] if vm["name"] == "gns3_vm"]
    assert len(bare) == 1 and bare[0]["port_id"] == gns3["ports"][0]["port_id"]
    # The odd net-stats row is skipped, every real row kept.
    assert esx03["ports"] == expected["esx03"]["ports"]
    [odd] = esx03["warnings"]
    assert "'net-stats -l'" in odd and "skipped line" in odd
    assert hosts["esx01"]["warnings"] == expected["esx01"]["warnings"] == []
    human = run(st, env, "discover", "esx02")
    assert human.code == 0 and "warning:" in human.stderr and "web 01" in human.stderr
    assert "gns3_vm" in human.stdout and "eth0" in human.stdout


@pytest.mark.parametrize("listing", ["noisy", "unreadable"])
def test_capture_goes_ahead_whatever_pktcap_uw_lists(make_sim: MakeSim, env, tmp_path, listing) -> None:
    st = make_sim(topology(esx02={"points_listing": listing, "net_stats_bare_names": True}))
    out = tmp_path / "gns3.pcapng"
    result = run(st, env, "capture", "--vm", "gns3_vm", "--nic", "eth0", "-c", "2", "-o", str(out), "--json")
    assert result.code == 0, result.stderr
    [stream] = result.json()["streams"]
    assert stream["packets"] == 2 and stream["error"] is None
    assert "eth0" in str(stream)
    said = [line for line in result.stderr.splitlines() if "pktcap-uw -A" in line]
    if listing == "unreadable":
        assert len(said) == 2 and "using the table for its ESXi version" in said[-1]
    else:
        assert len(said) == 2 and all("skipped line" in line for line in said)
    points = run(st, env, "points", "esx02", "--json")
    assert points.code == 0, points.stderr
    assert "VnicRx" in points.stdout


def test_drops_are_known_on_5_5(make_sim: MakeSim, env, tmp_path) -> None:
    st = make_sim(topology(esx01={"pktcap_drops": 3}))
    out = str(tmp_path / "o.pcapng")
    result = run(st, env, "capture", "--vmk", "vmk0", "--host", "esx01", "-c", "1", "-o", out, "--json")
    assert result.code == 0, result.stderr
    streams = result.json()["streams"]
    assert streams and all(s["dropped"] == 3 for s in streams), streams


def _tcp_ports(path: Path) -> list[tuple[int | None, int | None]]:
    with path.open("rb") as handle:
        return [(f.src_port, f.dst_port) for f in (fields(r.data) for r in CaptureFile(handle, path.name))]


def test_filter_expression_selects_on_8_and_is_refused_on_6_7(make_sim: MakeSim, env, tmp_path) -> None:
    st = make_sim(topology())
    out = tmp_path / "web02.pcapng"
    expression = "tcp port 5432 and not port 80"
    result = run(
        st, env, "capture", "--vm", "web02", "--filter", expression, "-c", "6", "-o", str(out), "--json"
    )
    assert result.code == 0, result.stderr
    [stream] = result.json()["streams"]
    assert f"--rcf '{expression}'" in stream["remote_command"]
    ports = _tcp_ports(out)
    assert len(ports) == 6 and all(5432 in pair for pair in ports), ports
    unfiltered = tmp_path / "all.pcapng"
    assert run(st, env, "capture", "--vm", "web02", "-c", "30", "-o", str(unfiltered)).code == 0
    assert any(80 in pair for pair in _tcp_ports(unfiltered))
    refused = run(  # each run its own file: esxcap does not overwrite one without --force
        st, env, "capture", "--vm", "web 01", "--filter", "icmp", "-c", "1", "-o", str(tmp_path / "r.pcapng")
    )
    assert refused.code == 2
    assert "esx02 (ESXi 6.7.0): pktcap-uw has no --rcf" in refused.stderr, refused.stderr
    assert "--ip" in refused.stderr and "--tcpport" in refused.stderr
    bad = run(
        st,
        env,
        "capture",
        "--vm",
        "web02",
        "--filter",
        "tcp prot 5432",
        "-c",
        "1",
        "-o",
        str(tmp_path / "b.pcapng"),
    )
    assert bad.code != 0 and "rcf" in bad.stderr


@pytest.mark.parametrize(
    ("names", "point"), [("Vnic", "VnicRx"), ("Vmxnet3", "Vmxnet3Rx"), ("both", "VnicRx")]
)
def test_6_7_vnic_points_follow_what_the_host_lists(make_sim: MakeSim, env, tmp_path, names, point) -> None:
    st = make_sim(topology(esx02={"vnic_points": names}))
    out = str(tmp_path / "web.pcapng")
    result = run(st, env, "capture", "--vm", "web 01", "--dir", "in", "-c", "1", "-o", out, "--json")
    assert result.code == 0, result.stderr
    [stream] = result.json()["streams"]
    assert stream["point"] == point and f"--capture {point}" in stream["remote_command"]
    assert stream["packets"] == 1


def _frame(src: str, dst: str, proto: int, sport: int | None, dport: int | None, vlan: int = 0) -> Fields:
    ips = (int(ipaddress.IPv4Address(src)), int(ipaddress.IPv4Address(dst)))
    return Fields("00:50:56:00:00:01", "00:50:56:00:00:02", vlan, 0x0800, *ips, proto, sport, dport)


WEB = _frame("10.0.0.5", "10.0.1.9", 6, 40000, 443)
DNS = _frame("10.0.1.9", "10.0.0.53", 17, 5353, 53, vlan=20)
PING = _frame("10.0.0.5", "10.0.0.6", 1, None, None)


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ("tcp port 443", {WEB}),
        ("host 10.0.0.5 and not icmp", {WEB}),
        ("src host 10.0.0.5", {WEB, PING}),
        ("dst net 10.0.0.0/24", {DNS, PING}),
        ("net 10.0.1.0 mask 255.255.255.0 && udp", {DNS}),
        ("(udp dst port 53 or icmp) and not vlan 20", {PING}),
        ("vlan", {DNS}),
        ("! ip", set()),
        ("ether src host 00:50:56:00:00:01", {WEB, DNS, PING}),
    ],
)
def test_simulated_rcf_applies_a_pcap_filter_subset(expression: str, matches: set[Fields]) -> None:
    predicate = compile_filter(expression)
    assert {f for f in (WEB, DNS, PING) if predicate(f)} == matches


@pytest.mark.parametrize(
    "expression", ["tcp prot 443", "host 10.0.0.300", "(tcp", "port 70000", "portrange 1-2", ""]
)
def test_simulated_rcf_refuses_what_it_cannot_compile(expression: str) -> None:
    with pytest.raises(RcfError):
        compile_filter(expression)


def test_simulated_pktcap_takes_rcf_from_7_0_only() -> None:
    hosts = {h.name: h for h in topology_from_data(topology(), "t").hosts}
    argv = ["pktcap-uw", "--vmk", "vmk0", "--rcf", "tcp port 80", "-o", "-"]
    old = pktcap.parse(hosts["esx02"], argv)
    assert isinstance(old, pktcap.Answer) and old.status != 0 and "unrecognized option '--rcf'" in old.stderr
    bad = pktcap.parse(hosts["esx03"], [*argv[:4], "tcp prot 80", "-o", "-"])
    assert isinstance(bad, pktcap.Answer) and "Failed to compile the rcf filter" in bad.stderr
    good = pktcap.parse(hosts["esx03"], argv)
    assert isinstance(good, pktcap.Session) and good.filter.expression is not None
