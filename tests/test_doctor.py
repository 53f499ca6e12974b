"""`esxcap doctor`: the self-check against simulated hosts configured for each behaviour a real host may
have (pktcap-uw that ignores an inherited INT, BusyBox `date` without %N, shell timeouts, a pktcap-uw
that prints text on stdout), what it remembers per build, and a capture using what it remembered."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import esxcap, isolated_env
from polling import wait_until

from esxcap.esxi import selfcheck
from esxcap.sim import SimulatorThread, topology_from_data
from esxcap.sim.processes import PKTCAP, SIGNALS
from esxcap.ssh import host_memory

BUILDS = {"healthy": "22380479", "stubborn": "21495797", "garbled": "20842708"}


def doctor_topology() -> dict[str, Any]:
    text = resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text(encoding="utf-8")
    template = yaml.safe_load(text)["hosts"]["esx03"]
    hosts = {name: {**template, "build": build} for name, build in BUILDS.items()}
    hosts["stubborn"].update(
        shell_timeout_s=3600,
        shell_interactive_timeout_s=900,
        faults={"pktcap_ignores_int": True, "date_nanoseconds": False},
    )
    hosts["garbled"]["faults"] = {"pktcap_garbage": True}
    return {"hosts": hosts}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    topology = topology_from_data(doctor_topology(), "<doctor hosts>")
    with SimulatorThread(topology, tmp_path_factory.mktemp("doctorsim")) as thread:
        yield thread


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doctorhome")


@pytest.fixture(scope="module")
def reports(sim: SimulatorThread, home: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """One `doctor --json` over every host: host -> check -> finding."""
    result = esxcap("-i", str(sim.sim.inventory_path), "doctor", "--json", env=isolated_env(home))
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["errors"] == [] and [h["host"] for h in doc["hosts"]] == list(BUILDS)
    return {h["host"]: {f["check"]: f for f in h["findings"]} for h in doc["hosts"]}


def test_a_healthy_host_passes_every_check(reports) -> None:
    found = reports["healthy"]
    assert found["ssh"]["data"]["cipher"] and found["ssh"]["data"]["host_key"]
    assert found["version"]["data"] == {"build": BUILDS["healthy"]}
    assert found["stream"]["status"] == "ok" and found["stream"]["data"]["format"].startswith("pcap")
    assert found["sigint"]["status"] == "ok" and found["sigint"]["data"]["stops"] is True
    assert found["sigint"]["data"]["trailer"] is not None and found["sigint"]["data"]["exit_status"] == 0
    assert found["sigterm"]["data"]["stops"] is True
    assert found["clock"]["data"]["precision"] == "nanoseconds"
    assert found["shell_timeouts"]["status"] == "ok"
    assert found["busybox"]["data"]["version"] == "1.29.3"
    assert found["tmp_space"]["status"] == "ok" and found["tmp_space"]["data"]["free_mb"] > 50
    assert found["capture_points"]["status"] == "ok" and "VnicRx" in found["capture_points"]["data"]["points"]
    assert len(found["esxcli_latency"]["data"]["samples_ms"]) == 2
    assert found["account"]["status"] == "ok"


def test_a_host_whose_pktcap_uw_ignores_int_and_whose_date_has_no_nanoseconds(reports, sim) -> None:
    found = reports["stubborn"]
    assert found["sigint"]["status"] == "warn" and found["sigint"]["data"]["stops"] is False
    assert found["sigint"]["data"]["trailer"] is None
    assert found["sigterm"]["data"]["stops"] is True
    assert found["clock"]["status"] == "warn" and found["clock"]["data"]["precision"] == "seconds"
    assert found["shell_timeouts"]["status"] == "warn"
    assert found["shell_timeouts"]["data"] == {"interactive_timeout_s": 900, "service_timeout_s": 3600}
    processes = sim.sim.hosts["stubborn"].processes
    assert wait_until(lambda: not processes.pktcaps(), timeout=10)


def test_text_on_stdout_instead_of_pcap_is_a_failed_check(reports) -> None:
    stream = reports["garbled"]["stream"]
    assert stream["status"] == "fail" and stream["data"]["format"] is None


def test_results_are_remembered_per_build(reports, home) -> None:
    env = {"XDG_CACHE_HOME": str(home / ".cache")}
    for host, build in BUILDS.items():
        doc = json.loads((home / ".cache" / "esxcap" / "doctor" / f"{build}.json").read_text())
        assert doc["schema"] == host_memory.SCHEMA and doc["host"] == host and doc["esxi"]["build"] == build
    assert host_memory.int_ignored(BUILDS["stubborn"], env) is True
    assert host_memory.int_ignored(BUILDS["healthy"], env) is False
    assert host_memory.int_ignored("1", env) is False and host_memory.recall("../x", env) is None


def test_a_capture_stops_with_term_where_doctor_saw_int_ignored(reports, sim, home, tmp_path) -> None:
    out = tmp_path / "stubborn.pcapng"
    result = esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--host", "stubborn", "--vm", "web02", "-d", "1",
        "-o", str(out), env=isolated_env(home),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "INT does not stop pktcap-uw" in result.stderr and out.exists()
    ended = [
        p for p in sim.sim.hosts["stubborn"].processes.ended if p.name == PKTCAP and "--switchport" in p.argv
    ]
    assert ended[-1].signals[0] == SIGNALS["TERM"]


def test_the_table_names_each_check(sim, tmp_path) -> None:
    result = esxcap("-i", str(sim.sim.inventory_path), "doctor", "healthy", env=isolated_env(tmp_path))
    assert result.code == 0, result.stderr
    for check in ("ssh", "sigint", "sigterm", "clock", "busybox", "tmp_space", "esxcli_latency"):
        assert check in result.stdout
    assert f"build {BUILDS['healthy']}" in result.stdout and "remembered for build" in result.stderr


def test_checked_in_counts_from_the_start_of_connecting(make_sim, tmp_path) -> None:
    """A host whose login takes 0.7 s is not "checked in 0.0 s": the time counts the login too."""
    data = doctor_topology()
    data["hosts"] = {"healthy": {**data["hosts"]["healthy"], "faults": {"login_delay_ms": 700}}}
    st = make_sim(data)
    result = esxcap("-i", str(st.sim.inventory_path), "doctor", "--json", env=isolated_env(tmp_path))
    assert result.code == 0, result.stderr
    [report] = result.json()["hosts"]
    assert report["seconds"] >= 0.7
    table = esxcap("-i", str(st.sim.inventory_path), "doctor", env=isolated_env(tmp_path))
    shown = re.search(r"checked in ([0-9.]+) s", table.stdout)
    assert shown is not None and float(shown.group(1)) >= 0.7, table.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BusyBox v1.29.3 (2019-09-04 10:42:17 PDT) multi-call binary.", "1.29.3"),
        ("sh: busybox: not found", None),
    ],
)
def test_busybox_banner(text, expected) -> None:
    assert selfcheck.busybox_version(text) == expected


def test_readers_of_what_doctor_asks() -> None:
    vdf = "Ramdisk   Size Used Available Use% Mounted on\ntmp   256M  16M  240M  6% --\n"
    assert (
        selfcheck.ramdisk_free_mb(vdf) == 240.0 and selfcheck.ramdisk_free_mb("root 1M 1M 1G 1% --") is None
    )
    assert selfcheck.date_precision("1700000000.123456789\n") == "nanoseconds"
    assert selfcheck.date_precision("1700000000.%N\n") == "seconds" and selfcheck.date_precision("x") is None
    assert selfcheck.advanced_int("   Path: /UserVars/X\n   Int Value: 900\n") == 900
    assert selfcheck.pcap_start(b"\xd4\xc3\xb2\xa1" + bytes(20)) and selfcheck.pcap_start(b"Dump: 1") is None
    assert selfcheck.trailer_counts(b"Dumped 3 packets to file -, dropped 1 packets.") == (3, 1)
    assert selfcheck.trailer_counts(b"Dump: 12, broken : 0, drop: 2, file err: 0") == (12, 2)
