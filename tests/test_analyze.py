"""`esxcap analyze` (one tshark fields pass) against what the simulator's traffic model injected and
against tshark's own statistics for the same files."""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import esxcap, isolated_env
from pcaptools import TSHARK, run_tool
from ticketsim import capture_vm, faulty_topology

from esxcap.pcap import Interface, PcapngWriter
from esxcap.sim import SimulatorThread, frames, topology_from_data
from esxcap.sim.flows import Address, Conversation
from esxcap.sim.topology import Flow, FlowEnd
from esxcap.ticket.analyze import PROGRESS_EVERY, analyze_files

pytestmark = pytest.mark.skipif(not TSHARK, reason="analysis needs tshark")
T0 = 1_700_000_000_000_000_000
CLIENT = Address("00:50:56:00:00:01", "10.0.0.1")
SERVER = Address("00:50:56:00:00:02", "10.0.0.2")


def tshark_count(path: Path, display_filter: str) -> int:
    return len(run_tool(TSHARK, "-n", "-r", str(path), "-Y", display_filter).splitlines())


def tshark_totals(path: Path) -> tuple[int, int]:
    """Frames and bytes from `tshark -q -z io,stat,0`."""
    out = run_tool(TSHARK, "-n", "-q", "-r", str(path), "-z", "io,stat,0")
    match = re.search(r"\|\s*0\.0+\s*<>\s*[\d.]+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", out)
    assert match, out
    return int(match.group(1)), int(match.group(2))


def tshark_tcp_conversations(path: Path) -> int:
    out = run_tool(TSHARK, "-n", "-q", "-r", str(path), "-z", "conv,tcp")
    return sum(1 for line in out.splitlines() if "<->" in line)


def model_capture(path: Path, packets: int) -> dict[str, int]:
    """A capture of a tcp flow retransmitting every 3rd connection's request, straight from the traffic
    model: client->server packets on a VnicTx interface, the rest on VnicRx (a merged file)."""
    flow = Flow("tcp-test", FlowEnd(vm="a"), FlowEnd(vm="b"), "tcp", 80, 10.0, retransmit_every=3)
    conv = Conversation(flow, CLIENT, SERVER, routed=False)
    injected = {"retransmissions": 0, "resets": 0, "tx": 0, "rx": 0}
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("esx01:a eth0:VnicTx:out"))
        writer.add_interface(Interface("esx01:a eth0:VnicRx:in"))
        for n in range(packets):
            _, step, _, _ = conv._tcp_step(n)
            injected["retransmissions"] += step.repeat
            injected["resets"] += bool(step.flags & frames.TCP_RST)
            injected["tx" if conv.forward(n) else "rx"] += 1
            writer.write_packet(0 if conv.forward(n) else 1, T0 + conv.send_time(n), conv.frame(n))
    return injected


def test_analysis_matches_the_injected_faults_and_tshark(tmp_path: Path) -> None:
    path = tmp_path / "model.pcapng"
    injected = model_capture(path, 500)
    assert injected["retransmissions"] >= 10 and injected["resets"] >= 5
    doc = analyze_files([path])
    assert doc["tcp"]["retransmissions"] == injected["retransmissions"]
    assert doc["tcp"]["resets"] == injected["resets"]
    assert doc["tcp"]["retransmissions"] == tshark_count(path, "tcp.analysis.retransmission")
    assert doc["tcp"]["resets"] == tshark_count(path, "tcp.flags.reset == 1")
    assert doc["tcp"]["duplicate_acks"] == tshark_count(path, "tcp.analysis.duplicate_ack") == 0
    assert doc["tcp"]["failed_handshakes"] == 0
    assert (doc["packets"], doc["bytes"]) == tshark_totals(path)
    assert doc["conversation_count"]["tcp"] == tshark_tcp_conversations(path)
    names = {i["name"]: i["packets"] for i in doc["interfaces"]}
    assert names == {"esx01:a eth0:VnicTx:out": injected["tx"], "esx01:a eth0:VnicRx:in": injected["rx"]}
    assert doc["capture_points"] == {"VnicTx": injected["tx"], "VnicRx": injected["rx"]}
    assert doc["protocols"][0] == {"path": "eth", "packets": 500, "bytes": doc["bytes"]}
    assert {"path": "eth:ip:tcp", "packets": 500, "bytes": doc["bytes"]} in doc["protocols"]
    top = doc["conversations"][0]  # a closed connection that retransmitted: 11 packets + 1
    assert top["proto"] == "tcp" and top["b"] == "10.0.0.2:80" and top["packets"] == 12


def _tcp(
    seq: int, ack: int, flags: int, forward: bool = True, window: int = 64240, data: bytes = b""
) -> bytes:
    src, dst = (CLIENT, SERVER) if forward else (SERVER, CLIENT)
    sport, dport = (40000, 80) if forward else (80, 40000)
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0)
    pseudo = frames.ip_bytes(src.ip) + frames.ip_bytes(dst.ip) + struct.pack("!BBH", 0, 6, 20 + len(data))
    head = head[:16] + struct.pack("!H", frames.checksum(pseudo + head + data)) + head[18:]
    return frames.ipv4(src.mac, dst.mac, src.ip, dst.ip, frames.PROTO_TCP, head + data, 1)


def test_problem_kinds_are_each_found(tmp_path: Path) -> None:
    syn, ack, psh, rst = frames.TCP_SYN, frames.TCP_ACK, frames.TCP_PSH, frames.TCP_RST
    packets = [
        _tcp(100, 0, syn),
        _tcp(500, 101, syn | ack, forward=False),
        _tcp(101, 501, ack),
        _tcp(101, 501, psh | ack, data=b"x" * 50),
        _tcp(501, 151, ack, forward=False, window=0),
        _tcp(151, 501, ack),
        _tcp(151, 501, ack),
        _tcp(151, 501, ack),
        _tcp(900, 0, syn),  # a second connection: the server resets it (a failed handshake)
        _tcp(0, 901, rst | ack, forward=False),
    ]
    query = frames.udp(CLIENT.ip, SERVER.ip, 5353, 53, frames.dns(7, "gone.example.test", None))
    answer = bytearray(frames.dns(7, "gone.example.test", None))
    answer[2:4] = b"\x81\x83"  # response, NXDOMAIN
    reply = frames.udp(SERVER.ip, CLIENT.ip, 53, 5353, bytes(answer))
    inner = frames.ipv4(CLIENT.mac, SERVER.mac, CLIENT.ip, "10.9.9.9", frames.PROTO_UDP, query, 2)[14:42]
    unreachable = bytes([3, 1, 0, 0, 0, 0, 0, 0]) + inner
    unreachable = unreachable[:2] + struct.pack("!H", frames.checksum(unreachable)) + unreachable[4:]
    packets += [
        frames.ipv4(CLIENT.mac, SERVER.mac, CLIENT.ip, SERVER.ip, frames.PROTO_UDP, query, 3),
        frames.ipv4(SERVER.mac, CLIENT.mac, SERVER.ip, CLIENT.ip, frames.PROTO_UDP, reply, 4),
        frames.ipv4(SERVER.mac, CLIENT.mac, SERVER.ip, CLIENT.ip, frames.PROTO_ICMP, unreachable, 5),
    ]
    path = tmp_path / "problems.pcapng"
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("lab"))
        for i, frame in enumerate(packets):
            writer.write_packet(0, T0 + i * 1_000_000, frame)
    doc = analyze_files([path])
    tcp = doc["tcp"]
    assert tcp["zero_windows"] == tshark_count(path, "tcp.analysis.zero_window") == 1
    assert tcp["duplicate_acks"] == tshark_count(path, "tcp.analysis.duplicate_ack") >= 1
    assert tcp["resets"] == 1 and tcp["failed_handshakes"] == 1 and tcp["retransmissions"] == 0
    assert doc["dns_errors"] == {"NXDomain gone.example.test": 1}
    assert doc["icmp_unreachable"] == {"10.0.0.2 -> 10.0.0.1 code 1": 1}
    assert doc["capture_points"] == {"lab": len(packets)}


def test_analysis_inside_a_running_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "model.pcapng"
    injected = model_capture(path, 60)

    async def inside() -> dict[str, object]:
        return analyze_files([path])

    doc = asyncio.run(inside())
    assert doc["packets"] == 60 and doc["tcp"]["resets"] == injected["resets"]


def test_simulator_capture_through_the_cli(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    with SimulatorThread(topology_from_data(faulty_topology(), "<faulty>"), tmp_path / "sim") as running:
        path = capture_vm(running, env, "m2", tmp_path / "m2.pcapng", count=120)
    result = esxcap("analyze", str(path), "--json", env=env)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["packets"] == 120
    assert doc["tcp"]["retransmissions"] == tshark_count(path, "tcp.analysis.retransmission") > 0
    assert doc["tcp"]["resets"] == tshark_count(path, "tcp.flags.reset == 1")
    assert (doc["packets"], doc["bytes"]) == tshark_totals(path)
    table = esxcap("analyze", str(path), env=env)
    assert table.code == 0 and "retransmissions" in table.stdout and "Protocol hierarchy" in table.stdout


def test_missing_tshark_is_a_clear_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    model_capture(path, 5)
    result = esxcap("analyze", str(path), env=isolated_env(tmp_path, PATH=str(tmp_path)))
    assert result.code == 2
    assert "needs tshark" in result.stderr and "apt install tshark" in result.stderr


def two_point_capture(path: Path, before_each: Callable[[int], bytes] | None = None) -> int:
    """300 packets of a retransmitting tcp flow at the VM's vNIC and again, VLAN-tagged, 40 us later at the
    uplink (as vm-to-vm records them), each pair after `before_each(n)`'s block if given; returns how many
    retransmissions the flow injected."""
    flow = Flow("tcp-test", FlowEnd(vm="a"), FlowEnd(vm="b"), "tcp", 80, 10.0, retransmit_every=3)
    conv = Conversation(flow, CLIENT, SERVER, routed=False)
    injected = 0
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("esx01:a eth0:VnicTx:both"))
        writer.add_interface(Interface("esx01:vmnic0:UplinkSndKernel:out"))
        for n in range(300):
            _, step, _, _ = conv._tcp_step(n)
            injected += step.repeat
            ts = T0 + conv.send_time(n)
            if before_each is not None:
                writer.write_blocks([before_each(n)], 0)
            writer.write_packet(0, ts, conv.frame(n))
            writer.write_packet(1, ts + 40_000, frames.tag_vlan(conv.frame(n), 20))
    return injected


def test_a_packet_seen_at_several_points_is_no_retransmission(tmp_path: Path) -> None:
    """Every packet at the VM's vNIC and again, VLAN-tagged, 40 us later at the uplink (as vm-to-vm
    records it): tshark alone counts each copy as a retransmission or duplicate ACK; esxcap counts the
    injected retransmissions only, and says how many copies it left out."""
    path = tmp_path / "points.pcapng"
    injected = two_point_capture(path)
    assert injected >= 5
    assert tshark_count(path, "tcp.analysis.retransmission || tcp.analysis.duplicate_ack") > 2 * injected
    doc = analyze_files([path])
    assert doc["tcp"]["retransmissions"] == injected and doc["tcp"]["duplicate_acks"] == 0
    assert doc["tcp_copies_not_counted"] == 300 and doc["packets"] == 600
    shown = esxcap("analyze", str(path), env=isolated_env(tmp_path))
    assert shown.code == 0, shown.stderr
    assert "300 copies of packets already seen at another capture point" in " ".join(shown.stdout.split())


def test_analyze_samples_a_long_file_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "model.pcapng"
    model_capture(path, 120)
    result = esxcap("analyze", str(path), "--max-packets", "50", "--json", env=isolated_env(tmp_path))
    assert result.code == 0, result.stderr
    assert result.json()["packets"] == 50 and result.json()["partial"] is True
    assert "only the first 50 packets were analysed" in " ".join(result.stderr.split())


@pytest.mark.parametrize("content", [b"", b'{"schema": "esxcap-capture/1"}\n', b"PK\x03\x04zip"])
def test_analyze_names_a_file_that_is_no_capture(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not-a-capture"
    path.write_bytes(content)
    result = esxcap("analyze", str(path), env=isolated_env(tmp_path))
    assert result.code == 2 and "is not a pcap or pcapng file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_cut_short_is_analysed_up_to_the_cut_and_says_so(tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole.pcapng", tmp_path / "cut.pcapng"
    model_capture(whole, 200)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2 + 7])
    result = esxcap("analyze", str(cut), "--json", env=isolated_env(tmp_path))
    assert result.code == 0, result.stderr
    doc = result.json()
    assert 0 < doc["packets"] < 200 and doc["packets"] == tshark_totals_of_readable(cut)
    assert "cut short" in " ".join(result.stderr.split()) and "what comes before is counted" in result.stderr
    assert doc["read_errors"] and "cut short" in doc["read_errors"][0]
    empty = tmp_path / "header-only.pcapng"
    empty.write_bytes(whole.read_bytes()[:100])
    refused = esxcap("analyze", str(empty), env=isolated_env(tmp_path))
    assert refused.code == 2 and "tshark could not read" in refused.stderr and "capinfos" in refused.stderr


def tshark_totals_of_readable(path: Path) -> int:
    """Frames tshark reads from a file that ends mid-packet (it says so and exits non-zero)."""
    done = subprocess.run([TSHARK, "-n", "-r", str(path)], capture_output=True, check=False)
    return len(done.stdout.splitlines())


def test_a_tshark_without_lua_is_named(tmp_path: Path) -> None:
    """A tshark built without Lua ignores the script: the analysis says so instead of showing zeros."""
    path = tmp_path / "model.pcapng"
    model_capture(path, 20)
    shim = tmp_path / "bin" / "tshark"
    shim.parent.mkdir()
    shim.write_text(
        f'#!/bin/sh\nfor a; do shift; case "$a" in -X|lua_script*) ;; *) set -- "$@" "$a";; esac; done\n'
        f'exec {TSHARK} "$@"\n'
    )
    shim.chmod(0o755)
    result = esxcap("analyze", str(path), env=isolated_env(tmp_path, PATH=f"{shim.parent}:/usr/bin:/bin"))
    assert result.code == 2
    assert "did not run esxcap's Lua script" in result.stderr and "built with Lua" in result.stderr


def _tshark_children_running() -> bool:
    """Whether a tshark this process started is still running (not exited, not a zombie)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if comm == "tshark" and int(fields[1]) == os.getpid() and fields[0] != "Z":
            return True
    return False


def test_progress_counts_what_tshark_has_dissected_while_it_runs(tmp_path: Path) -> None:
    """esxcap's own pass reads far ahead of tshark: progress is tshark's count, told while it still
    has packets to dissect, not esxcap's pass racing to the end and then a silent wait."""
    path = tmp_path / "long.pcapng"
    datagram = frames.udp(CLIENT.ip, SERVER.ip, 5000, 5001, b"x" * 18)
    frame = frames.ipv4(CLIENT.mac, SERVER.mac, CLIENT.ip, SERVER.ip, frames.PROTO_UDP, datagram, 1)
    packets = PROGRESS_EVERY + PROGRESS_EVERY // 5
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("lab"))
        for n in range(packets):
            writer.write_packet(0, T0 + n * 1000, frame)
    reports: list[tuple[str, int, bool]] = []
    doc = analyze_files(
        [path], progress=lambda name, n: reports.append((name, n, _tshark_children_running()))
    )
    assert doc["packets"] == packets
    assert [(name, n) for name, n, _ in reports] == [("long.pcapng", PROGRESS_EVERY)]
    if Path("/proc/self/stat").exists():
        assert reports[0][2], "the progress report came after tshark had finished"
    shown = esxcap("analyze", str(path), env=isolated_env(tmp_path))
    assert shown.code == 0 and f"analyze: {PROGRESS_EVERY} packets of long.pcapng read" in shown.stderr


def test_a_folder_and_a_negative_top_are_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    result = esxcap("analyze", str(folder), env=isolated_env(tmp_path))
    assert result.code == 2 and "is a folder, not a capture file" in result.stderr, result.stderr
    path = tmp_path / "model.pcapng"
    model_capture(path, 20)
    result = esxcap("analyze", str(path), "--top", "-1", "--json", env=isolated_env(tmp_path))
    assert result.code == 2 and "--top must be 0" in result.stderr, result.stderr


def _break_block(data: bytes, index: int) -> bytes:
    """A pcapng file whose `index`-th packet block (0 = the first) claims an impossible length."""
    offset, packets = 0, -1
    while offset < len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        packets += kind == 6
        if packets == index:
            return data[: offset + 4] + struct.pack("<I", 0x0FFFFFF0) + data[offset + 8 :]
        offset += length
    raise AssertionError("no such packet")


def test_a_file_corrupt_midway_is_analysed_up_to_the_damage_and_says_so(tmp_path: Path) -> None:
    """A damaged block mid-file is read as tshark reads it (up to the damage, with a warning), as a file
    cut short is; damage before any packet is a usage error naming the file."""
    whole, broken, first = tmp_path / "whole.pcapng", tmp_path / "broken.pcapng", tmp_path / "first.pcapng"
    model_capture(whole, 100)
    broken.write_bytes(_break_block(whole.read_bytes(), 60))
    result = esxcap("analyze", str(broken), "--json", env=isolated_env(tmp_path))
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["packets"] == tshark_totals_of_readable(broken) == 60
    assert "byte offset" in doc["read_errors"][0]
    assert "what comes before is counted" in " ".join(result.stderr.split())
    first.write_bytes(_break_block(whole.read_bytes(), 0))
    refused = esxcap("analyze", str(first), env=isolated_env(tmp_path))
    assert refused.code == 2 and "first.pcapng" in refused.stderr and "capinfos" in refused.stderr


def test_a_port_pair_reused_by_a_later_connection_is_another_conversation(tmp_path: Path) -> None:
    """Two connections one after the other on the same ports: two conversations, as tshark's -z conv."""
    syn, ack, fin = frames.TCP_SYN, frames.TCP_ACK, frames.TCP_FIN
    packets = []
    for isn in (1000, 900_000):
        packets += [
            _tcp(isn, 0, syn),
            _tcp(5000 + isn, isn + 1, syn | ack, forward=False),
            _tcp(isn + 1, 5001 + isn, ack),
            _tcp(isn + 1, 5001 + isn, fin | ack),
            _tcp(5001 + isn, isn + 2, fin | ack, forward=False),
            _tcp(isn + 2, 5002 + isn, ack),
        ]
    path = tmp_path / "reuse.pcapng"
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("lab"))
        for i, frame in enumerate(packets):
            writer.write_packet(0, T0 + i * 1_000_000, frame)
    doc = analyze_files([path])
    assert doc["conversation_count"]["tcp"] == tshark_tcp_conversations(path) == 2
    assert [c["packets"] for c in doc["conversations"]] == [6, 6]


def _write(path: Path, packets: list[tuple[int, bytes]], names: tuple[str, ...] = ("lab",)) -> None:
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        for name in names:
            writer.add_interface(Interface(name))
        for i, (iface, frame) in enumerate(packets):
            writer.write_packet(iface, T0 + i * 1_000_000, frame)


def test_a_one_direction_capture_is_no_failed_handshake(tmp_path: Path) -> None:
    """pktcap-uw's default direction sees the client's SYN, ACK and data but never the SYN-ACK: that
    connection did not fail; one whose SYN got only a reset, or nothing, did."""
    syn, ack, psh, rst = frames.TCP_SYN, frames.TCP_ACK, frames.TCP_PSH, frames.TCP_RST
    one_way = tmp_path / "one-way.pcapng"
    _write(
        one_way, [(0, _tcp(100, 0, syn)), (0, _tcp(101, 501, ack)), (0, _tcp(101, 501, psh | ack, data=b"x"))]
    )
    assert analyze_files([one_way])["tcp"]["failed_handshakes"] == 0
    refused = tmp_path / "refused.pcapng"
    _write(refused, [(0, _tcp(100, 0, syn)), (0, _tcp(0, 101, rst | ack, forward=False))])
    assert analyze_files([refused])["tcp"]["failed_handshakes"] == 1
    unanswered = tmp_path / "unanswered.pcapng"
    _write(unanswered, [(0, _tcp(100, 0, syn)), (0, _tcp(100, 0, syn))])
    assert analyze_files([unanswered])["tcp"]["failed_handshakes"] == 1


def test_files_of_one_name_in_two_folders_are_kept_apart(tmp_path: Path) -> None:
    """One host's SYN-ACK must not hide another host's failed handshake because both files are x.pcapng."""
    syn, ack = frames.TCP_SYN, frames.TCP_ACK
    (tmp_path / "h1").mkdir()
    (tmp_path / "h2").mkdir()
    _write(tmp_path / "h1" / "x.pcapng", [(0, _tcp(100, 0, syn))])
    _write(tmp_path / "h2" / "x.pcapng", [(0, _tcp(500, 101, syn | ack, forward=False))])
    doc = analyze_files([tmp_path / "h1" / "x.pcapng", tmp_path / "h2" / "x.pcapng"])
    assert doc["tcp"]["failed_handshakes"] == 1
    assert len(doc["interfaces"]) == 2


def test_a_dns_error_seen_at_two_points_counts_once(tmp_path: Path) -> None:
    answer = bytearray(frames.dns(7, "gone.example.test", None))
    answer[2:4] = b"\x81\x83"  # response, NXDOMAIN
    reply = frames.udp(SERVER.ip, CLIENT.ip, 53, 5353, bytes(answer))
    frame = frames.ipv4(SERVER.mac, CLIENT.mac, SERVER.ip, CLIENT.ip, frames.PROTO_UDP, reply, 4)
    path = tmp_path / "points.pcapng"
    _write(
        path,
        [(0, frame), (1, frames.tag_vlan(frame, 20))],
        ("esx01:vm:VnicRx:in", "esx01:vmnic0:UplinkRcvKernel:in"),
    )
    assert tshark_count(path, "dns.flags.rcode == 3") == 2
    assert analyze_files([path])["dns_errors"] == {"NXDomain gone.example.test": 1}


def _custom_block(text: bytes) -> bytes:
    """A pcapng Custom Block (type 0xBAD, private enterprise number 32473): tshark shows it as a frame of
    its own, esxcap's reader skips it."""
    body = struct.pack("<I", 32473) + text + b"\0" * (-len(text) % 4)
    length = 12 + len(body)
    return struct.pack("<II", 0x0BAD, length) + body + struct.pack("<I", length)


def test_blocks_that_are_no_packets_do_not_shift_the_copies(tmp_path: Path) -> None:
    """tshark numbers a custom block (or a systemd journal entry) as a frame, esxcap's pass does not read
    it as a packet: the copies across capture points are still those of the packets tshark names."""
    path = tmp_path / "blocks.pcapng"
    injected = two_point_capture(path, before_each=lambda n: _custom_block(b"note %d" % n))
    assert tshark_totals(path)[0] == 900
    doc = analyze_files([path])
    assert doc["packets"] == 600 and doc["tcp_copies_not_counted"] == 300
    assert doc["tcp"]["retransmissions"] == injected and doc["tcp"]["duplicate_acks"] == 0


def _memory_growth_mb(path: Path) -> tuple[dict[str, Any], int]:
    """The analysis of `path` in a fresh interpreter, and how far its peak memory (VmHWM: ru_maxrss would
    count pytest's, inherited across fork) grew meanwhile."""
    script = (
        "import json, re, sys; from pathlib import Path;"
        "from esxcap.ticket.analyze import analyze_files;"
        "peak = lambda: int(re.search(r'VmHWM:\\s*(\\d+)', Path('/proc/self/status').read_text())[1]);"
        "before = peak();"
        "doc = analyze_files([Path(sys.argv[1])]);"
        "print(json.dumps([doc, (peak() - before) // 1024]))"
    )
    argv = [sys.executable, "-c", script, str(path)]
    doc, grown_mb = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    return doc, grown_mb


def test_a_clock_running_backwards_keeps_no_more_in_memory(tmp_path: Path) -> None:
    """300k distinct packets 10 ms apart, each earlier than the one before: esxcap's pass keeps the digests
    of the packets within COPY_WINDOW_NS of the one it reads (it kept every one: ~70 MB)."""
    path = tmp_path / "backwards.pcapng"
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("esx01:a eth0:VnicTx:out"))
        for n in range(300_000):
            datagram = frames.udp(CLIENT.ip, SERVER.ip, 1000, 2000, struct.pack("!I", n))
            frame = frames.ipv4(CLIENT.mac, SERVER.mac, CLIENT.ip, SERVER.ip, 17, datagram, n)
            writer.write_packet(0, T0 - n * 10_000_000, frame)
    doc, grown_mb = _memory_growth_mb(path)
    assert doc["packets"] == 300_000 and doc["tcp_copies_not_counted"] == 0
    assert grown_mb < 30, f"esxcap's analysis grew by {grown_mb} MB for a clock running backwards"


def test_a_syn_flood_is_not_held_in_memory(tmp_path: Path) -> None:
    """Every packet a SYN (one flood, one stream): tshark prints a line for each, mostly after esxcap's
    faster pass has ended; those lines are taken as they come, not all held first (150k lines held took
    ~100 MB more)."""
    path = tmp_path / "flood.pcapng"
    segment = frames.tcp(CLIENT.ip, SERVER.ip, 40000, 80, 1, 0, frames.TCP_SYN, b"")
    syn = frames.ipv4(CLIENT.mac, SERVER.mac, CLIENT.ip, SERVER.ip, 6, segment, 1)
    with path.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("esx01:a eth0:VnicTx:out"))
        for n in range(150_000):
            writer.write_packet(0, T0 + n * 1000, syn)
    doc, grown_mb = _memory_growth_mb(path)
    assert doc["packets"] == 150_000 and doc["tcp"]["failed_handshakes"] == 1
    assert grown_mb < 40, f"esxcap's analysis grew by {grown_mb} MB for one flood"


@pytest.mark.parametrize("name", ["-", "-r", "lua_script:x"])
def test_a_file_named_like_an_option_is_read_by_tshark_too(tmp_path: Path, name: str) -> None:
    """A file called "-" is not tshark's standard input, nor is one starting with a dash an option."""
    model_capture(tmp_path / name, 40)
    result = esxcap("analyze", "--json", "--", name, env=isolated_env(tmp_path), cwd=tmp_path)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["read_errors"] == [] and doc["packets"] == 40
    assert sum(p["packets"] for p in doc["protocols"] if p["path"] == "eth") == 40
