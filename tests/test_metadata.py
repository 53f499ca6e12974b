"""Capture metadata: the sidecar JSON a real capture writes beside its file, and the pure builders."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env
from ticketsim import capture_vm, faulty_topology

from esxcap.capture.metadata import filters_dict, read_sidecar, sidecar_path, utc
from esxcap.esxi.pktcap import FlowFilter
from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread, topology_from_data


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    base = tmp_path_factory.mktemp("metasim")
    with SimulatorThread(topology_from_data(faulty_topology(), "<faulty>"), base) as sim_thread:
        yield sim_thread


@pytest.fixture(scope="module")
def captured(running: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("meta")
    return capture_vm(running, isolated_env(base), "m2", base / "out" / "m2.pcapng", count=40)


def test_sidecar_is_private_and_complete(captured: Path) -> None:
    side = sidecar_path(captured)
    assert side.name == "m2.pcapng.json"
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    doc = read_sidecar(captured)
    assert doc is not None
    assert doc["schema"] == "esxcap-capture/1" and doc["tool"]["name"] == "esxcap"
    assert doc["operator"] and doc["file"] == "m2.pcapng"
    assert doc["started_utc"].endswith("Z") and doc["started_utc"] <= doc["stopped_utc"]
    host = doc["hosts"]["mid"]
    assert host["esxi"]["version"] == "6.7.0" and host["esxi"]["build"] == "8169922"
    assert host["clock"]["start"]["method"] and abs(host["clock_offset_ms"] + 35) < 25  # skew -35 ms
    [target] = doc["targets"]
    assert target["vm"] == "m2" and target["nic"] == "eth0" and target["mac"] == "00:50:56:9a:20:02"
    assert target["portgroup"] == "Server" and target["vswitch"] == "vSwitch0"
    assert isinstance(target["port_id"], int) and target["port_id"] == target["selector"]["value"]
    assert all("--switchport" in c and str(target["port_id"]) in c for c in doc["remote_commands"])
    assert doc["options"]["count"] == 40 and doc["filters"] == {}
    assert sum(s["packets"] for s in doc["streams"]) == doc["packets"] == 40
    assert all(s["dropped"] is not None and s["error"] is None for s in doc["streams"])
    assert doc["errors"] == []


def test_pcapng_section_comment_names_operator_and_commands(captured: Path) -> None:
    doc = read_sidecar(captured)
    assert doc is not None
    with captured.open("rb") as handle:
        source = CaptureFile(handle, captured.name)
        list(source)
        [comment] = source.sections[0].comments
    assert f"by {doc['operator']}" in comment
    assert all(command in comment for command in doc["remote_commands"])


def test_a_broken_sidecar_is_reported(tmp_path: Path) -> None:
    capture = tmp_path / "x.pcapng"
    capture.write_bytes(b"")
    assert read_sidecar(capture) is None
    sidecar_path(capture).write_text(json.dumps({"schema": "other"}))
    with pytest.raises(Exception, match="not an esxcap capture metadata file"):
        read_sidecar(capture)


def test_pure_helpers() -> None:
    assert utc(0) == "1970-01-01T00:00:00.000Z"
    assert utc(1.9996) == "1970-01-01T00:00:02.000Z"
    assert utc(None) is None
    assert filters_dict(FlowFilter(ip="10.0.0.1", tcpport=443)) == {"ip": "10.0.0.1", "tcpport": "443"}


@pytest.mark.parametrize("ignore_sigchld", [False, True], ids=["plain", "parent-ignores-sigchld"])
def test_capture_then_bundle_in_one_go(
    running: SimulatorThread, tmp_path: Path, ignore_sigchld: bool
) -> None:
    """The bundle's analysis runs tshark from a worker thread while the capture loop runs; it must not
    take tshark's exit for a crash, even when started by a parent that ignores SIGCHLD."""
    env = isolated_env(tmp_path)
    out = tmp_path / "caps"
    result = esxcap(
        "-i", str(running.sim.inventory_path), "capture", "--vm", "n1", "-c", "10", "-o", f"{out}/",
        "--bundle", "DEMO-1", env=env, ignore_sigchld=ignore_sigchld,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    [archive] = out.glob("DEMO-1-*.zip")
    [capture] = out.glob("*.pcapng")
    assert sidecar_path(capture).is_file()
    verified = esxcap("verify", str(archive), "--json", env=env)
    assert verified.code == 0 and verified.json()["ticket"] == "DEMO-1"
    assert f"captures/{capture.name}" in verified.json()["checked"]
