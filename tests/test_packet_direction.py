"""Per-packet direction: every packet of a one-direction stream carries the pcapng direction flag of its
point (seen from the switch port: esxcap.esxi.directions), so tshark's `frame.packet_flags_direction`
works, whether the stream was written alone, merged with others, merged again with `esxcap merge` or
split with `--split`; a stream that mixes both directions carries no flag and its interface description
says so. Captures run through the real CLI against the simulator and are read back with tshark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env
from pcaptools import TSHARK, tshark_fields

from esxcap.esxi.directions import direction_note, mixes_directions, packet_direction
from esxcap.sim import SimulatorThread

requires_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")
INBOUND, OUTBOUND = "0x00000001", "0x00000002"
WEB02_MAC = "00:50:56:a2:30:01"
"""web02's vNIC on esx03 in the packaged topology."""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def test_direction_of_each_point_seen_from_the_switch_port() -> None:
    for point in ("VnicTx", "Vmxnet3Tx", "PortInput", "UplinkRcvKernel", "UplinkRcv", "vnictx"):
        assert packet_direction([point], None) == "inbound", point
    for point in ("VnicRx", "Vmxnet3Rx", "PortOutput", "UplinkSndKernel", "UplinkSnd"):
        assert packet_direction([point], None) == "outbound", point
    for points, dir_code in (
        (["Drop"], None),
        (["PreDVFilter", "PostDVFilter"], None),
        (["EtherswitchDispath"], None),
        ([], None),
        ([], 2),
        (["VnicRx", "VnicTx"], None),
        (["VnicRx", "Drop"], None),
        (["PortInput"], 2),
    ):
        assert packet_direction(points, dir_code) is None, (points, dir_code)
    assert packet_direction(["VnicTx", "PortInput"], None) == "inbound"  # two points, one way


def test_mixed_streams_are_named_and_others_say_their_flag() -> None:
    assert mixes_directions(["VnicRx", "VnicTx"], None) and mixes_directions([], 2)
    assert not mixes_directions(["PreDVFilter", "PostDVFilter"], None)
    assert not mixes_directions(["VnicRx"], None)
    assert direction_note(["UplinkRcvKernel", "UplinkSndKernel"], None) == (
        "in and out mixed (UplinkRcvKernel,UplinkSndKernel): "
        "pktcap-uw does not say which way each packet went"
    )
    assert direction_note([], 2).startswith("in and out mixed (--dir 2)")
    assert (
        direction_note(["VnicTx"], None) == "packets flagged inbound: from the VM's vNIC into its switch port"
    )
    assert (
        direction_note(["UplinkRcvKernel"], None)
        == "packets flagged inbound: from the wire into the uplink's port"
    )
    assert direction_note(["PortOutput"], None) == (
        "packets flagged outbound: out of the switch port to its vNIC, vmknic or uplink"
    )
    assert direction_note(["Drop"], None) == ""


def _capture(running: SimulatorThread, env: dict[str, str], out: Path, *args: str) -> None:
    result = esxcap(
        "-i", str(running.sim.inventory_path), "capture", "--host", "esx03", *args,
        "-c", "3", "-d", "60", "-o", str(out), env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr


def _directions_by_interface(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, direction in tshark_fields(path, "frame.interface_name", "frame.packet_flags_direction"):
        found.setdefault(name, set()).add(direction)
    return found


EXPECTED = {
    "in": {
        "esx03:web02 eth0:VnicRx:in": OUTBOUND,
        "esx03:vmk0:PortOutput:in": OUTBOUND,
        "esx03:vmnic0:UplinkRcvKernel:in": INBOUND,
    },
    "out": {
        "esx03:web02 eth0:VnicTx:out": INBOUND,
        "esx03:vmk0:PortInput:out": INBOUND,
        "esx03:vmnic0:UplinkSndKernel:out": OUTBOUND,
    },
}


@requires_tshark
@pytest.mark.parametrize("direction", ["in", "out"])
def test_merged_one_direction_streams_carry_their_flag_and_split_keeps_it(
    running: SimulatorThread, env: dict[str, str], tmp_path: Path, direction: str
) -> None:
    out = tmp_path / f"{direction}.pcapng"
    _capture(
        running,
        env,
        out,
        "--vm",
        "web02",
        "--vmk",
        "vmk0",
        "--uplink",
        "vmnic0",
        "--dir",
        direction,
        "--split",
    )
    expected = {name: {flag} for name, flag in EXPECTED[direction].items()}
    assert _directions_by_interface(out) == expected
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert {s["interface"]: s["packet_direction"] for s in sidecar["streams"]} == {
        name: "inbound" if flag == INBOUND else "outbound" for name, flag in EXPECTED[direction].items()
    }
    split = [_directions_by_interface(path) for path in tmp_path.glob(f"{direction}-*.pcapng")]
    assert all(len(found) == 1 for found in split)
    assert {name: flags for found in split for name, flags in found.items()} == expected
    vnic = "esx03:web02 eth0:VnicRx:in" if direction == "in" else "esx03:web02 eth0:VnicTx:out"
    rows = tshark_fields(out, "frame.interface_name", "eth.src", "eth.dst")
    macs = [(src, dst) for name, src, dst in rows if name == vnic]
    assert macs and all((dst if direction == "in" else src) == WEB02_MAC for src, dst in macs)


@requires_tshark
def test_a_stream_written_alone_carries_its_flag_and_merge_keeps_it(
    running: SimulatorThread, env: dict[str, str], tmp_path: Path
) -> None:
    sent, received, merged = tmp_path / "sent.pcapng", tmp_path / "received.pcapng", tmp_path / "m.pcapng"
    _capture(running, env, sent, "--vm", "web02", "--dir", "out")
    _capture(running, env, received, "--vmk", "vmk0", "--dir", "in")
    assert _directions_by_interface(sent) == {"esx03:web02 eth0:VnicTx:out": {INBOUND}}
    result = esxcap("merge", str(sent), str(received), "-o", str(merged), env=env)
    assert result.code == 0, result.stderr
    assert _directions_by_interface(merged) == {
        "esx03:web02 eth0:VnicTx:out": {INBOUND},
        "esx03:vmk0:PortOutput:in": {OUTBOUND},
    }


@requires_tshark
def test_streams_of_both_directions_carry_no_flag_and_say_so(
    running: SimulatorThread, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "both.pcapng"
    _capture(running, env, out, "--vm", "web02", "--vmk", "vmk0", "--dir", "both")
    assert _directions_by_interface(out) == {
        "esx03:web02 eth0:VnicRx,VnicTx:both": {""},
        "esx03:vmk0:PortOutput,PortInput:both": {""},
    }
    descriptions = {
        name: text for name, text in tshark_fields(out, "frame.interface_name", "frame.interface_description")
    }
    assert descriptions["esx03:web02 eth0:VnicRx,VnicTx:both"].endswith(
        "; in and out mixed (VnicRx,VnicTx): pktcap-uw does not say which way each packet went"
    )
    assert "; in and out mixed (--dir 2)" in descriptions["esx03:vmk0:PortOutput,PortInput:both"]
