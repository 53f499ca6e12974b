"""Capture metadata: the sidecar JSON a real capture writes beside its file, and the pure builders."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import isolated_env
from ticketsim import capture_vm, faulty_topology

from esxcap.metadata import filters_dict, read_sidecar, sidecar_path, utc
from esxcap.pcap import CaptureFile
from esxcap.pktcap import FlowFilter
from esxcap.sim import SimulatorThread, topology_from_data


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("meta")
    with SimulatorThread(topology_from_data(faulty_topology(), "<faulty>"), base / "sim") as running:
        yield capture_vm(running, isolated_env(base), "m2", base / "out" / "m2.pcapng", count=40)


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
    assert "clock_offset_ms" in host
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
