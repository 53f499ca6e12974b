"""The command line's options are declared once: `capture` and every recipe refuse the same bad values
with the same message, and exit with the same code for the same situation (a host that cannot be
reached, in a real capture and in --dry-run)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY

from esxcap.cli.exitcodes import ExitCode, outcome_code


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


BAD_VALUES = [
    (("--max-bytes", "0"), "--max-bytes 0"),
    (("--max-bytes", "ten"), "--max-bytes ten: not a size"),
    (("--max-bytes", "99999999999999999999"), "at most 4.0 EiB"),
    (("-c", "0"), "--count 0"),
    (("-c", "99999999999"), "--count 99999999999"),
    (("-d", "nan"), "--duration nan"),
    (("-d", "inf"), "--duration inf"),
    (("-d", "1e20"), "--duration 1e+20"),
    (("-d", "-1"), "--duration -1"),
    (("--parallel", "0"), "--parallel must be at least 1"),
    (("--trigger", "tcp-rst", "--before-bytes", "512K"), "--before-bytes 512K: at least 1.0 MiB"),
    (("--trigger", "tcp-rst", "--before-bytes", "lots"), "--before-bytes lots: not a size"),
]


@pytest.mark.parametrize(("args", "said"), BAD_VALUES)
def test_capture_and_recipes_refuse_the_same_values(fast_sim, env, args: tuple[str, ...], said: str) -> None:
    inventory = str(fast_sim.sim.inventory_path)
    commands = [("capture", "--vm", "m1"), ("recipe", "vm-to-vm", "m1", "n2"), ("recipe", "dvfilter", "n2")]
    for command in commands:
        result = esxcap("-i", inventory, *command, *args, "--dry-run", env=env)
        assert result.code == ExitCode.USAGE and said in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("dry_run", [True, False])
def test_capture_and_recipe_agree_when_a_searched_host_is_down(make_sim, env, tmp_path, dry_run) -> None:
    st = make_sim(copy.deepcopy(FAST_TOPOLOGY))
    st.call(st.sim.stop_host("old"))
    inventory = str(st.sim.inventory_path)
    tail = ("--dry-run",) if dry_run else ("-d", "1", "-o", str(tmp_path))
    capture = esxcap("-i", inventory, "capture", "--vm", "m1", "--vm", "n2", *tail, env=env)
    recipe = esxcap("-i", inventory, "recipe", "vm-to-vm", "m1", "n2", *tail, env=env)
    assert capture.code == recipe.code == ExitCode.OK, (capture.stderr, recipe.stderr)
    for result in (capture, recipe):
        assert "old could not be searched" in result.stderr


def test_one_stream_stopped_by_duration_with_a_searched_host_down_leaves_no_task_behind(
    make_sim, env, tmp_path
) -> None:
    """asyncio's "Task was destroyed but it is pending!" once followed such a capture (clirun refuses it)."""
    st = make_sim(copy.deepcopy(FAST_TOPOLOGY))
    st.call(st.sim.stop_host("old"))
    result = esxcap(
        "-i", str(st.sim.inventory_path), "capture", "--vm", "m1", "-d", "1", "-o", str(tmp_path), env=env
    )
    assert result.code == ExitCode.OK and "old could not be searched" in result.stderr, result.stderr


def test_a_vm_on_an_unreachable_host_is_not_reported_as_missing_alone(make_sim, env) -> None:
    st = make_sim(copy.deepcopy(FAST_TOPOLOGY))
    st.call(st.sim.stop_host("new"))
    result = esxcap("-i", str(st.sim.inventory_path), "capture", "--vm", "n2", "--dry-run", env=env)
    assert result.code == ExitCode.USAGE
    assert "not searched (unreachable): new" in result.stderr


def test_max_bytes_takes_a_size_and_says_when_it_stopped_the_capture(fast_sim, env, tmp_path) -> None:
    inventory = str(fast_sim.sim.inventory_path)
    planned = esxcap("-i", inventory, "capture", "--vm", "m1", "--max-bytes", "10M", "--dry-run", env=env)
    assert planned.code == ExitCode.OK, planned.stderr
    out = tmp_path / "small.pcapng"
    result = esxcap(
        "-i", inventory, "capture", "--vm", "m1", "--max-bytes", "1KiB", "-o", str(out), "--json", env=env
    )
    assert result.code == ExitCode.OK, result.stderr
    doc = result.json()
    assert doc["stop_reason"] == "max-bytes" and [s["stop_reason"] for s in doc["streams"]] == ["max-bytes"]
    assert 0 < doc["streams"][0]["bytes"] <= 1024 and doc["streams"][0]["packets"] > 1
    assert "stopped at --max-bytes 1.0 KiB" in result.stderr
    sidecar = json.loads(out.with_name("small.pcapng.json").read_text())
    assert sidecar["options"]["max_bytes"] == 1024 and sidecar["options"]["stop_reason"] == "max-bytes"


def test_hints_name_the_option_or_argument_of_the_command_at_hand(fast_sim, env) -> None:
    inventory = str(fast_sim.sim.inventory_path)
    uplink = esxcap("-i", inventory, "recipe", "uplink", "mid", "vmnic9", "--dry-run", env=env)
    assert uplink.code == ExitCode.USAGE and "mid has no vmnic9; its uplinks: vmnic0" in uplink.stderr
    assert "esxcap recipe uplink mid VMNIC" in uplink.stderr and "--uplink" not in uplink.stderr
    vmk = esxcap("-i", inventory, "recipe", "vmk", "mid", "vmk7", "--dry-run", env=env)
    assert vmk.code == ExitCode.USAGE and "esxcap recipe vmk mid VMK" in vmk.stderr
    point = esxcap("-i", inventory, "capture", "--vm", "m1", "--point", "vnicrxx", "--dry-run", env=env)
    assert point.code == ExitCode.USAGE and "--point: invalid value 'vnicrxx'" in point.stderr
    assert "did you mean VnicRx" in point.stderr and "--capture" not in point.stderr


def test_host_option_and_choices_as_admins_type_them(fast_sim, env) -> None:
    """`-H` works on discover and find as on capture; --dir and --stage take any case."""
    inventory = str(fast_sim.sim.inventory_path)
    discovered = esxcap("-i", inventory, "discover", "-H", "mid", "--json", env=env)
    assert discovered.code == ExitCode.OK and [h["host"] for h in discovered.json()["hosts"]] == ["mid"]
    found = esxcap("-i", inventory, "find", "m1", "--host", "new", "-H", "mid", "--json", env=env)
    assert found.code == ExitCode.OK and {m["host"] for m in found.json()["matches"]} == {"mid"}
    upper = esxcap("-i", inventory, "capture", "--vm", "n2", "--dir", "IN", "--dry-run", "--json", env=env)
    assert upper.code == ExitCode.OK and {s["direction"] for s in upper.json()["streams"]} == {"in"}


def test_a_count_that_some_streams_never_reach_names_them(fast_sim, env, tmp_path) -> None:
    """n1 -> n2 is dropped before n2: with -c per stream, the streams it never reaches are named while
    the capture waits (here -d ends the wait)."""
    result = esxcap(
        "-i", str(fast_sim.sim.inventory_path), "recipe", "vm-to-vm", "n1", "n2", "-c", "2", "-d", "5",
        "-o", str(tmp_path), env=env,
    )  # fmt: skip
    assert result.code == ExitCode.OK, result.stderr
    shown = " ".join(result.stderr.split())
    assert "streams have their -c 2 packets; still waiting for" in shown
    assert "new:n2 eth0:VnicRx:in (0 so far)" in shown and "-c counts per stream" in shown


def test_outcome_codes() -> None:
    assert outcome_code(0, 3) == ExitCode.OK
    assert outcome_code(1, 3) == ExitCode.PARTIAL
    assert outcome_code(3, 3) == ExitCode.ALL_FAILED
    assert outcome_code(0, 3, interrupted=True) == ExitCode.INTERRUPTED


def dry(sim, env, *args: str) -> tuple[list[dict[str, str]], str]:
    result = esxcap("-i", str(sim.sim.inventory_path), *args, "--dry-run", "--json", env=env)
    assert result.code == ExitCode.OK, result.stderr
    return result.json()["streams"], result.stderr


def test_requests_that_used_to_do_something_else(sim, env) -> None:
    both, _ = dry(sim, env, "capture", "--vm", "app 03", "--nic", "1", "--nic", "2", "--dir", "in")
    assert sorted(s["target"] for s in both) == ["app 03 eth0", "app 03 eth1"]
    twice, said = dry(sim, env, "capture", "--vm", "web02", "--vm", "web02", "--dir", "in")
    assert [s["target"] for s in twice] == ["web02 eth0"] and "asked for twice" in said
    globbed, _ = dry(sim, env, "capture", "--vm", "web0*", "--dir", "in")
    assert [s["target"] for s in globbed] == ["web02 eth0"]
    several = esxcap("-i", str(sim.sim.inventory_path), "capture", "--vm", "web*", "--dry-run", env=env)
    assert several.code == ExitCode.USAGE and "'web 01'" in several.stderr and "'web02'" in several.stderr
    uplinks, said = dry(sim, env, "capture", "--uplink", "vmnic2", "--all-hosts", "--dir", "in")
    assert {s["host"] for s in uplinks} == {"esx02", "esx03"}
    assert "esx01 has no vmnic2" in said and "captured where it exists" in said


def test_vm_to_vm_refuses_one_vm_and_takes_both_uplinks_of_one_host(sim, env) -> None:
    same = esxcap(
        "-i", str(sim.sim.inventory_path), "recipe", "vm-to-vm", "web02", "web02", "--dry-run", env=env
    )
    assert same.code == ExitCode.USAGE and "needs two ends" in same.stderr
    streams, _ = dry(sim, env, "recipe", "vm-to-vm", "app 03", "mgmt-tools", "--nic-a", "1")
    uplinks = {s["target"] for s in streams if s["target"].startswith("vmnic")}
    assert len(uplinks) == 2, streams  # A's on VDS-Prod, B's on vSwitch0


def test_console_lines_leave_the_json_document_alone(sim, env, tmp_path) -> None:
    result = esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--vm", "web02", "-c", "3", "--console", "--json",
        "-o", str(tmp_path / "c.pcapng"), env=env,
    )  # fmt: skip
    assert result.code == ExitCode.OK, result.stderr
    assert result.json()["streams"] and result.stderr.strip()


def test_find_nothing_is_refused_before_connecting(env, tmp_path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  down: {hostname: 127.0.0.1, port: 9, user: root}\n")
    result = esxcap("-i", str(inventory), "find", " ", env=env)
    assert result.code == ExitCode.USAGE and "find needs something to look for" in result.stderr
    assert "down" not in result.stderr


def test_wide_selections(sim, env) -> None:
    """--vm GLOB --many, --nic all and --portgroup (by name and by VLAN) each become one stream per port;
    outside a terminal they need --yes (--dry-run only shows them)."""
    many, _ = dry(sim, env, "capture", "--vm", "web*", "--many", "--dir", "in")
    assert sorted(s["target"] for s in many) == ["web 01 eth0", "web02 eth0"]
    every, _ = dry(sim, env, "capture", "--vm", "app 03", "--nic", "all", "--dir", "in")
    assert sorted(s["target"] for s in every) == ["app 03 eth0", "app 03 eth1"]
    named, _ = dry(sim, env, "capture", "--portgroup", "dvpg-web", "--dir", "in")
    assert sorted(s["target"] for s in named) == ["app 03 eth0", "web02 eth0"]
    vlan, _ = dry(sim, env, "capture", "--portgroup", "20", "--dir", "in")
    assert {s["host"] for s in vlan} == {"esx02"} and len(vlan) == 4  # web 01, qa, gns3_vm's two vNICs
    unasked = esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--vm", "web*", "--many", "-c", "1", env=env
    )
    assert unasked.code == ExitCode.USAGE and "needs confirming" in unasked.stderr
    assert "esx03: web02 eth0" in unasked.stderr
    every_nic = esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--vm", "app 03", "--nic", "all", "-c", "1", env=env
    )
    assert every_nic.code == ExitCode.USAGE and "needs confirming" in every_nic.stderr
    nowhere = esxcap(
        "-i", str(sim.sim.inventory_path), "capture", "--portgroup", "nope", "--dry-run", env=env
    )
    assert nowhere.code == ExitCode.USAGE and "dvpg-web" in nowhere.stderr


def test_before_bytes_takes_a_size_as_max_bytes_does(fast_sim, env) -> None:
    inventory = str(fast_sim.sim.inventory_path)
    for size in ("2M", "1.5GiB", "8388608"):
        result = esxcap(
            "-i", inventory, "capture", "--vm", "m1", "--trigger", "tcp-rst", "--before-bytes", size,
            "--dry-run", env=env,
        )  # fmt: skip
        assert result.code == ExitCode.OK, (size, result.stderr)
