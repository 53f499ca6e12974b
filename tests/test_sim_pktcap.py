"""The simulated pktcap-uw over real SSH: pcap output read by esxcap's reader and by tshark, per-version
stderr, the same packet along its path on two hosts, filters, snaplen, refusals, `-A`, and the
argv esxcap's builder produces being accepted."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import run_exec, ssh

from esxcap.esxi.capabilities import Capabilities, parse_available_points
from esxcap.esxi.pktcap import CaptureSpec, FlowFilter, Selector, build_argv
from esxcap.pcap import PcapStreamReader, Record
from esxcap.sim import SimulatorThread
from esxcap.sim import pktcap as simpktcap

TSHARK = shutil.which("tshark")
N1_PORT, M1_PORT, M2_PORT, A1_PORT = 67108868, 33554436, 33554437, 33554435


def records(out: bytes) -> list[Record]:
    reader = PcapStreamReader()
    got = reader.feed(out)
    assert reader.finish() == 0
    return got


def ip_offset(frame: bytes) -> int:
    return 18 if frame[12:14] == b"\x81\x00" else 14


def ethertype(frame: bytes) -> int:
    return int.from_bytes(frame[ip_offset(frame) - 2 : ip_offset(frame)], "big")


def tshark_lines(tmp_path: Path, out: bytes, *fields: str) -> list[str]:
    assert TSHARK is not None, "tshark is installed in CI (.ci/run)"
    path = tmp_path / "c.pcap"
    path.write_bytes(out)
    extra = ["-T", "fields", *(a for f in fields for a in ("-e", f))] if fields else []
    done = subprocess.run([TSHARK, "-n", "-r", str(path), *extra], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


V80_STDERR = re.compile(
    r"The switch port id is 0x04000004\.\nTo capture 5 packets\.\nThe session filter IP protocol is 0x01\.\n"
    r"The session capture point is VnicTx\.\npktcap: The output file is -\.\n"
    r"pktcap: No server port specifed, select \d+ as the port\.\npktcap: Local CID 2\.\n"
    r"pktcap: Listen on port \d+\.\npktcap: Main thread: \d+\.\npktcap: Dump Thread: \d+\.\n"
    r"pktcap: Recv Thread: \d+\.\npktcap: Accept\.\.\.\npktcap: Vsock connection from port \d+ cid 2\.\n"
    r"pktcap: Receive thread exiting\.\.\.\npktcap: Dump thread exiting\.\.\.\n"
    r"pktcap: Join with dump thread failed\.\npktcap: Join with recvthread failed\.\n"
    r"pktcap: Destroying session \d+\.\n"
    r"pktcap: Dumped 5 packet to file -, dropped 0 packets\.\npktcap: Done\.\n"
)
V55_STDERR = re.compile(
    r"The switch port id is 0x02000003\nTo capture 5 packets\nThe session filter IP protocol is 0x01\n"
    r"The session capture point is Vmxnet3Tx\nNo server port specifed, select \d+ as the port\n"
    r"The output file is -\nLocal CID 2\nListen on port \d+\n"
    r"Accept\.\.\.Vsock connection from port \d+ cid 2\n"
    r"Receive thread exiting\.\.\. \nDump thread exiting\.\.\. \nDestroying session \d+ \n\n"
    r"Dump: 5, broken : 0, drop: 0, file err: 0\nDone\.\n"
)


@pytest.mark.parametrize(
    ("host", "port", "point", "expected"),
    [("new", N1_PORT, "VnicTx", V80_STDERR), ("old", A1_PORT, "Vmxnet3Tx", V55_STDERR)],
)
def test_count_limited_icmp_capture_is_valid_pcap_with_the_versions_messages(
    fast_sim: SimulatorThread, tmp_path: Path, host: str, port: int, point: str, expected: re.Pattern[str]
) -> None:
    argv = [
        "pktcap-uw",
        "--switchport",
        str(port),
        "--capture",
        point,
        "-c",
        "5",
        "--proto",
        "0x01",
        "-o",
        "-",
    ]
    status, out, err = run_exec(fast_sim, host, argv)
    assert status == 0
    assert expected.fullmatch(err.decode()), err.decode()
    got = records(out)
    assert len(got) == 5 and all(ethertype(r.data) == 0x0800 and r.data[23] == 1 for r in got)
    assert [r.ts_ns for r in got] == sorted(r.ts_ns for r in got)
    lines = tshark_lines(tmp_path, out)
    assert len(lines) == 5 and all("ICMP" in line and "Echo (ping) request" in line for line in lines)


def _icmp_key(frame: bytes) -> bytes:
    """Identifier and sequence number of an ICMP echo (they do not change along the path)."""
    ip = ip_offset(frame)
    return frame[ip + 20 + 4 : ip + 20 + 8]


def test_one_packet_at_sender_vnic_uplinks_and_receiver_vnic_in_order(fast_sim: SimulatorThread) -> None:
    filters = ["--proto", "0x01", "--dstip", "10.0.20.11", "-c", "8", "-o", "-"]
    places = [
        ("new", ["--switchport", str(N1_PORT), "--capture", "VnicTx"]),
        ("new", ["--uplink", "vmnic0", "--capture", "UplinkSndKernel"]),
        ("mid", ["--uplink", "vmnic0", "--capture", "UplinkRcvKernel"]),
        ("mid", ["--switchport", str(M1_PORT), "--capture", "VnicRx"]),
    ]

    async def capture(host: str, selector: list[str]) -> list[Record]:
        async with ssh(fast_sim, host) as conn:
            result = await conn.run(" ".join(["pktcap-uw", *selector, *filters]), encoding=None, timeout=10)
            assert result.exit_status == 0
            assert isinstance(result.stdout, bytes)
            return records(result.stdout)

    async def all_four() -> list[list[Record]]:
        return list(await asyncio.gather(*(capture(h, s) for h, s in places)))

    seen = asyncio.run(all_four())
    skew = {h: fast_sim.sim.traffic.skew_ns(h) for h in ("new", "mid")}
    by_key = [{_icmp_key(r.data): r for r in recs} for recs in seen]
    common = set.intersection(*(set(k) for k in by_key))
    assert common, "the four captures saw no packet in common"
    hops = {(h.host, h.point): h.offset_ns for h in fast_sim.sim.traffic.hops_of("ping-n1-m1")}
    for key in common:
        at = [by_key[i][key] for i in range(4)]
        true_ts = [r.ts_ns - skew[host] for r, (host, _) in zip(at, places, strict=True)]
        assert true_ts == sorted(true_ts) and len(set(true_ts)) == 4
        wire = true_ts[2] - true_ts[1]
        model = hops["mid", "UplinkRcvKernel"] - hops["new", "UplinkSndKernel"]
        assert abs(wire - model) <= 1000
        tagged = [r.data[12:14] == b"\x81\x00" for r in at]
        assert tagged == [False, True, True, False]
        assert all(int.from_bytes(r.data[14:16], "big") & 0xFFF == 20 for r in at[1:3])
    assert skew["mid"] == -35_000_000


@pytest.mark.parametrize(
    ("host", "selector", "filters", "check"),
    [
        ("new", ["--uplink", "vmnic0", "--capture", "UplinkRcvKernel"], ["--proto", "0x06"],
         lambda f: f[ip_offset(f) + 9] == 6),
        ("mid", ["--switchport", str(M1_PORT), "--capture", "VnicRx"], ["--ip", "10.0.20.21"],
         lambda f: bytes([10, 0, 20, 21]) in (f[26:30], f[30:34])),
        ("new", ["--switchport", str(N1_PORT), "--capture", "VnicRx"], ["--dstport", "5432"],
         lambda f: f[23] == 6 and f[36:38] == (5432).to_bytes(2, "big")),
        ("mid", ["--switchport", str(M1_PORT), "--capture", "VnicTx"], ["--srcmac", "00:50:56:9a:20:01"],
         lambda f: f[6:12] == bytes.fromhex("0050569a2001")),
        ("mid", ["--uplink", "vmnic0", "--capture", "UplinkSndKernel"], ["--vlan", "20"],
         lambda f: f[12:14] == b"\x81\x00" and int.from_bytes(f[14:16], "big") == 20),
        ("mid", ["--switchport", str(M2_PORT), "--capture", "VnicRx"], ["--ethtype", "0x0806"],
         lambda f: f[12:14] == b"\x08\x06"),
        ("new", ["--switchport", str(N1_PORT), "--capture", "VnicTx"],
         ["--dstip", "10.0.20.0/24", "--udpport", "53"],
         lambda f: f[23] == 17 and f[36:38] == (53).to_bytes(2, "big")),
    ],
)  # fmt: skip
def test_flow_filters_select_the_right_packets(
    fast_sim: SimulatorThread, host: str, selector: list[str], filters: list[str], check: object
) -> None:
    status, out, err = run_exec(fast_sim, host, ["pktcap-uw", *selector, *filters, "-c", "6", "-o", "-"])
    assert status == 0, err
    got = records(out)
    assert len(got) == 6
    assert callable(check) and all(check(bytes(r.data)) for r in got)


def test_filters_exclude_what_they_should(fast_sim: SimulatorThread) -> None:
    """Unfiltered, the same place carries packets the filter above would have refused."""
    status, out, _ = run_exec(fast_sim, "new", ["pktcap-uw", "--uplink", "vmnic0", "-c", "30", "-o", "-"])
    assert status == 0
    protos = {r.data[ip_offset(r.data) + 9] for r in records(out) if ethertype(r.data) == 0x0800}
    assert {1, 6} <= protos


def test_snaplen_truncates_and_keeps_the_original_length(fast_sim: SimulatorThread, tmp_path: Path) -> None:
    argv = ["pktcap-uw", "--switchport", str(N1_PORT), "--capture", "VnicRx", "--proto", "0x06", "-s", "40"]
    status, out, _ = run_exec(fast_sim, "new", [*argv, "-c", "10", "-o", "-"])
    got = records(out)
    assert status == 0 and len(got) == 10
    assert all(r.caplen <= 40 for r in got) and any(r.origlen > 40 for r in got)
    lengths = tshark_lines(tmp_path, out, "frame.len", "frame.cap_len")
    assert all(int(cap) == min(int(full), 40) for full, cap in (x.split() for x in lengths))


def test_dir_2_is_refused_on_5_5_and_accepted_on_6_7(fast_sim: SimulatorThread) -> None:
    status, out, err = run_exec(
        fast_sim, "old", ["pktcap-uw", "--switchport", str(A1_PORT), "--dir", "2", "-o", "-"]
    )
    assert status != 0 and out == b"" and err.startswith(b"error: ")
    argv = ["pktcap-uw", "--vmk", "vmk0", "--dir", "2", "-c", "4", "-o", "-"]
    status, out, err = run_exec(fast_sim, "mid", argv)
    assert status == 0 and b"The dir is Input and Output\n" in err and len(records(out)) == 4


def test_several_points_need_6_7(fast_sim: SimulatorThread) -> None:
    argv = ["--switchport", str(M1_PORT), "--capture", "VnicRx,VnicTx", "-c", "6", "-o", "-"]
    status, out, _ = run_exec(fast_sim, "mid", ["pktcap-uw", *argv])
    assert status == 0 and len(records(out)) == 6
    argv = ["--switchport", str(A1_PORT), "--capture", "Vmxnet3Rx,Vmxnet3Tx", "-o", "-"]
    status, _, err = run_exec(fast_sim, "old", ["pktcap-uw", *argv])
    assert status == 1 and err.startswith(b"error: No such capture point: Vmxnet3Rx,Vmxnet3Tx\n")


def test_unknown_point_names_it_and_lists_the_points(fast_sim: SimulatorThread) -> None:
    status, out, err = run_exec(
        fast_sim, "new", ["pktcap-uw", "--uplink", "vmnic0", "--capture", "UplinkRcvKernel0"]
    )
    lines = err.decode().splitlines()
    assert status == 1 and out == b""
    assert lines[0] == "error: No such capture point: UplinkRcvKernel0"
    assert parse_available_points("\n".join(lines[1:])) == Capabilities.for_version((8, 0, 2)).points


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vmk", "vmk7"], "error: Failed to find the vmk vmk7\n"),
        (["--uplink", "vmnic9"], "error: Failed to find the uplink vmnic9\n"),
        (["--switchport", "12345"], "error: Invalid switch port: 12345\n"),
        (["--dvfilter", "nope"], "error: Failed to find the dvfilter nope\n"),
        (["--lifID", "138800000002", "--capture", "VdrRxLeaf"],
         "error: The lif 138800000002 is not supported on this host\n"),
    ],
)  # fmt: skip
def test_unknown_selectors_are_errors(fast_sim: SimulatorThread, argv: list[str], message: str) -> None:
    assert run_exec(fast_sim, "new", ["pktcap-uw", *argv, "-o", "-"]) == (1, b"", message.encode())


def test_bad_option_is_a_usage_error(fast_sim: SimulatorThread) -> None:
    status, _, err = run_exec(fast_sim, "old", ["pktcap-uw", "--uplink", "vmnic0", "--udpport", "53"])
    assert status == 1 and err.startswith(b"pktcap-uw: unrecognized option '--udpport'\n")


@pytest.mark.parametrize("host", ["old", "mid", "new"])
def test_available_points_parse_back(fast_sim: SimulatorThread, host: str) -> None:
    status, out, _ = run_exec(fast_sim, host, ["pktcap-uw", "-A"])
    version = fast_sim.sim.hosts[host].topology.version_tuple
    assert status == 0 and parse_available_points(out.decode()) == Capabilities.for_version(version).points


def test_dropped_flow_shows_at_predvfilter_and_drop_only(fast_sim: SimulatorThread) -> None:
    dvfilter = "nic-2101400-eth0-fw"
    assert fast_sim.sim.hosts["new"].topology.vms[1].world_id == 2101400
    pre = run_exec(
        fast_sim, "new", ["pktcap-uw", "--dvfilter", dvfilter, "--stage", "0", "-c", "3", "-o", "-"]
    )
    drop = run_exec(fast_sim, "new", ["pktcap-uw", "--capture", "Drop", "-c", "3", "-o", "-"])
    assert pre[0] == drop[0] == 0 and len(records(pre[1])) == len(records(drop[1])) == 3
    assert all(r.data[36:38] == (443).to_bytes(2, "big") or r.data[34:36] == (443).to_bytes(2, "big")
               for r in records(drop[1]))  # fmt: skip
    argv = ["pktcap-uw", "--switchport", "67108869", "--capture", "VnicRx", "--tcpport", "443", "-o", "-"]
    with pytest.raises(TimeoutError):
        run_exec(fast_sim, "new", argv, timeout=0.5)
    for proc in fast_sim.sim.hosts["new"].processes.pktcaps():
        fast_sim.call(_interrupt(fast_sim, "new", proc.cid))


async def _interrupt(st: SimulatorThread, host: str, cid: int) -> None:
    st.sim.hosts[host].processes.signal(cid, 2)


def test_console_mode_prints_the_text_dump_of_the_version(fast_sim: SimulatorThread) -> None:
    status, out, err = run_exec(
        fast_sim, "mid", ["pktcap-uw", "--uplink", "vmnic0", "--proto", "0x01", "-c", "2"]
    )
    text = out.decode()
    head = r"\d\d:\d\d:\d\d\.\d{6}\[1\] Captured at EtherswitchDispath point, TSO not enabled, "
    tail = (
        r"Checksum not offloaded and not verified, (VLAN tag 20, )?length 98\.\nSegment\[0\] ---- 98 bytes:\n"
    )
    assert status == 0 and re.match(head + tail + r"0x0000:  (\w{4} ){8}\n", text)
    assert "\n0x0060:  " in text
    assert b"Output the packet info to console.\n" in err and b"Dumped 2 packet to console" in err


@pytest.mark.parametrize(
    "spec",
    [
        CaptureSpec(Selector("switchport", N1_PORT), ("VnicRx", "VnicTx"), count=3, snaplen=128),
        CaptureSpec(Selector("vmk", "vmk0"), dir=2, count=3,
                    filters=FlowFilter(proto="icmp", ip="10.0.0.12")),
        CaptureSpec(Selector("uplink", "vmnic0"), ("UplinkRcvKernel",), count=3, filters=FlowFilter(vlan=20)),
        CaptureSpec(Selector("uplink", "vmnic0"), ("UplinkSndKernel",), count=3, ng=True),
        CaptureSpec(Selector("switchport", N1_PORT), ("PortInput",), count=3, filters=FlowFilter(udpport=53)),
        CaptureSpec(Selector("none"), ("Drop",), count=3,
                    filters=FlowFilter(tcpport=443, dstip="10.0.120.22")),
        CaptureSpec(Selector("dvfilter", "nic-2101400-eth0-fw"), stage="pre", count=3),
    ],
)  # fmt: skip
def test_argv_from_esxcaps_builder_runs(fast_sim: SimulatorThread, spec: CaptureSpec) -> None:
    host = fast_sim.sim.hosts["new"].topology
    argv = build_argv(spec, Capabilities.for_version(host.version_tuple), "new")
    assert isinstance(simpktcap.parse(host, argv), simpktcap.Session)
    status, out, err = run_exec(fast_sim, "new", argv)
    assert status == 0, err
    if spec.ng:
        assert out[:4] == b"\x0a\x0d\x0d\x0a"
    else:
        assert len(records(out)) == 3


def test_pcapng_output_reads_in_tshark(fast_sim: SimulatorThread, tmp_path: Path) -> None:
    status, out, _ = run_exec(
        fast_sim, "new", ["pktcap-uw", "--uplink", "vmnic0", "--ng", "-c", "4", "-o", "-"]
    )
    assert status == 0 and len(tshark_lines(tmp_path, out)) == 4


def test_output_file_lands_in_the_hosts_tmp(fast_sim: SimulatorThread) -> None:
    status, out, err = run_exec(
        fast_sim, "mid", ["pktcap-uw", "--vmk", "vmk0", "-c", "2", "-o", "/tmp/x.pcap"]
    )
    assert status == 0 and out == b"" and b"Dumped 2 packet to file /tmp/x.pcap" in err
    data = bytes(fast_sim.sim.hosts["mid"].processes.files["/tmp/x.pcap"])
    assert len(records(data)) == 2 and struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
