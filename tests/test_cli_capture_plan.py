"""`esxcap capture --dry-run`: targets resolved through real discovery into the exact pktcap-uw commands,
and every refusal names the object and the way out — all through the real CLI against the simulator.
Plans for a modern and a 5.5 host are made over every transport."""

from __future__ import annotations

import pty
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env

from esxcap.inventory import TRANSPORTS
from esxcap.sim import SimulatorThread, load_topology


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with SimulatorThread(load_topology(), tmp_path_factory.mktemp("sim")) as sim_thread:
        yield str(sim_thread.sim.inventory_path)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def plan(inventory: str, env: dict[str, str], *args: str) -> list[dict[str, str]]:
    result = esxcap("-i", inventory, "capture", *args, "--dry-run", "--json", env=env)
    assert result.code == 0, result.stderr
    return result.json()["streams"]


def refused(inventory: str, env: dict[str, str], *args: str) -> str:
    result = esxcap("-i", inventory, "capture", *args, "--dry-run", env=env)
    assert result.code == 2, (result.stdout, result.stderr)
    return result.stderr


def test_vm_is_found_on_its_host_and_captured_both_ways_in_one_stream(inventory, env, transport) -> None:
    [stream] = plan(inventory, env, "--vm", "web 01", "--transport", transport)
    assert stream["host"] == "esx02" and stream["target"] == "web 01 eth0"
    argv = shlex.split(stream["remote_command"])
    assert argv[:2] == ["pktcap-uw", "--switchport"] and argv[2].isdigit()
    assert argv[argv.index("--capture") + 1] == "VnicRx,VnicTx" and argv[-2:] == ["-o", "-"]
    assert stream["interface"] == "esx02:web 01 eth0:VnicRx,VnicTx:both"


def test_old_host_gets_one_stream_per_direction_with_its_point_names(inventory, env, transport) -> None:
    streams = plan(inventory, env, "--vm", "legacy-erp", "--transport", transport)
    assert [s["point"] for s in streams] == ["Vmxnet3Rx", "Vmxnet3Tx"]
    assert all(s["host"] == "esx01" for s in streams)


def test_direction_and_filters_reach_the_command(inventory, env) -> None:
    [stream] = plan(
        inventory,
        env,
        "--vm",
        "web02",
        "--dir",
        "out",
        "--proto",
        "icmp",
        "--ip",
        "10.110.0.12",
        "-c",
        "10",
        "-s",
        "128",
    )
    argv = shlex.split(stream["remote_command"])
    assert argv[argv.index("--capture") + 1] == "VnicTx"
    assert argv[argv.index("--proto") + 1] == "0x01" and argv[argv.index("--ip") + 1] == "10.110.0.12"
    assert argv[argv.index("-c") + 1] == "10" and argv[argv.index("-s") + 1] == "128"


def test_two_nic_vm_needs_a_nic_choice(inventory, env) -> None:
    message = refused(inventory, env, "--vm", "gns3_vm")
    assert "2 vNICs" in message and "--nic" in message and "00:50:56:9a:20:04" in message
    first = plan(inventory, env, "--vm", "gns3_vm", "--nic", "1")[0]
    second = plan(inventory, env, "--vm", "gns3_vm", "--nic", "2")[0]
    by_mac = plan(inventory, env, "--vm", "gns3_vm", "--mac", "00-50-56-9A-20-04")[0]
    assert first["remote_command"] != second["remote_command"] == by_mac["remote_command"]
    assert "no vNIC with MAC" in refused(inventory, env, "--vm", "gns3_vm", "--mac", "00:50:56:00:00:99")


def test_unknown_vm_lists_what_runs(inventory, env) -> None:
    message = refused(inventory, env, "--vm", "nope")
    assert "'nope' not found" in message and "web02" in message


def test_host_targets_need_a_host_choice_when_there_are_several(inventory, env) -> None:
    assert "which host" in refused(inventory, env, "--vmk", "vmk0")
    streams = plan(inventory, env, "--vmk", "vmk0", "--all-hosts")
    assert sorted({s["host"] for s in streams}) == ["esx01", "esx02", "esx03"]
    assert [s["point"] for s in streams if s["host"] == "esx01"] == ["PortOutput", "PortInput"]
    [one] = plan(inventory, env, "--vmk", "vmk0", "--host", "esx03")
    assert "--dir 2" in one["remote_command"]


def test_unknown_uplink_names_the_ones_there(inventory, env) -> None:
    message = refused(inventory, env, "--uplink", "vmnic9", "--host", "esx03")
    assert "no vmnic9" in message and "vmnic0" in message


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--vlan", "5000"], "--vlan"),
        (["--proto", "xyz"], "--proto"),
        (["--srcip", "10.0.0.300"], "--srcip"),
        (["--dir", "sideways"], "--dir"),
        (["--snaplen", "10"], "-s"),
        (["--udpport", "53", "--host", "esx01"], "6.7"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(inventory, env, args, named) -> None:
    target = ["--vm", "legacy-erp"] if "--host" in args else ["--vm", "web 01"]
    assert named in refused(inventory, env, *target, *[a for a in args if a not in ("--host", "esx01")])


def test_hostile_vm_name_never_reaches_the_command(inventory, env) -> None:
    [stream] = plan(inventory, env, "--vm", 'qa "quoted" $(id) & co')
    assert "$(" not in stream["remote_command"] and "quoted" not in stream["remote_command"]
    assert stream["target"].startswith('qa "quoted" $(id) & co')


def test_stdout_to_a_terminal_is_refused(inventory, env) -> None:
    """`-o -` writes binary; with stdout on a terminal (a pty here) it is refused before anything connects."""
    _leader, terminal = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "esxcap", "-i", inventory, "capture", "--vm", "web 01", "-o", "-"],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and b"terminal" in proc.stderr
