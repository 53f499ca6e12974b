"""esxcap inside Wireshark: the real `tshark` runs the installed extcap (a temporary HOME) against the
simulator: it lists the inventory's hosts and recipes, captures with the right interface names, stops
early on `-a packets:N` leaving nothing running; the dialog parses as extcap syntax line by line, reload
discovers the host, and the dialog then answers from the cache with no SSH at all."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env
from pcaptools import TSHARK, FifoReader, requires_tools, tshark_fields
from polling import wait_until

from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread

RECIPES = 'recipes:\n  web-db: vm-to-vm "web 01" データベース01\n  mgmt: [vmk, esx02, vmk0]\n'
WEB01 = "vm:1:web 01"
ARG_TYPES = {
    "integer", "unsigned", "long", "double", "string", "password", "boolean", "boolflag", "fileselect",
    "selector", "editselector", "radio", "multicheck", "timestamp",
}  # fmt: skip
LINE = re.compile(r"(extcap|interface|dlt|arg|value) ((?:\{[a-z]+=[^{}\n]*\})+)\Z")
FIELD = re.compile(r"\{([a-z]+)=([^{}\n]*)\}")


@pytest.fixture(scope="module")
def inventory(running: SimulatorThread) -> Path:
    """The simulator's inventory with saved recipes (beside it: its key paths are relative)."""
    path = running.sim.inventory_path.with_name("extcap-inventory.yaml")
    path.write_text(running.sim.inventory_path.read_text(encoding="utf-8") + RECIPES, encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path, inventory: Path) -> dict[str, str]:
    return isolated_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"), ESXCAP_INVENTORY=str(inventory))


@pytest.fixture
def installed(env: dict[str, str], inventory: Path) -> dict[str, str]:
    """The launcher installed where this tshark looks, as an admin would: `esxcap -i INV extcap install`."""
    result = esxcap("-i", str(inventory), "extcap", "install", env=env)
    assert result.code == 0, result.stderr
    return {k: v for k, v in env.items() if k != "ESXCAP_INVENTORY"}  # the launcher pins it


def extcap(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esxcap.cli.extcap", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def tshark(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert TSHARK is not None
    return subprocess.run([TSHARK, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def remote_pktcaps(running: SimulatorThread, host: str) -> list[str]:
    async def listing() -> list[str]:
        return [p.command for p in running.sim.hosts[host].processes.pktcaps()]

    return running.call(listing())


def read_back(data: bytes) -> tuple[list[str], list[str]]:
    """(interface names, the interface of every packet in order)."""
    source = CaptureFile(BytesIO(data), "capture")
    packets = [source.interfaces[r.interface].name for r in source]
    return [i.name for i in source.interfaces], packets


def parse_extcap(lines: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Every line as (kind, fields), failing on anything that is not extcap syntax."""
    parsed = []
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"not an extcap line: {line!r}"
        fields = dict(FIELD.findall(match[2]))
        assert "".join(f"{{{k}={v}}}" for k, v in FIELD.findall(match[2])) == match[2]
        parsed.append((match[1], fields))
    return parsed


def check_dialog(lines: list[str]) -> dict[str, list[dict[str, str]]]:
    """Check a dialog's args and values; returns each arg's call -> its values."""
    args: dict[str, dict[str, str]] = {}
    values: dict[str, list[dict[str, str]]] = {}
    for kind, fields in parse_extcap(lines):
        if kind == "arg":
            assert fields["number"] == str(len(args)) and fields["call"].startswith("--")
            assert fields["type"] in ARG_TYPES and fields["display"]
            args[fields["number"]] = fields
            values[fields["call"]] = []
        else:
            assert kind == "value", lines
            owner = args[fields["arg"]]
            assert owner["type"] in ("selector", "radio", "multicheck", "editselector")
            assert fields["value"] and fields["display"]
            values[owner["call"]].append(fields)
    for call, listed in values.items():
        assert sum(1 for v in listed if v.get("default") == "true") <= 1, call
    return values


def test_tshark_lists_every_host_and_recipe_once_installed(installed, tmp_path) -> None:
    launcher = tmp_path / ".config" / "wireshark" / "extcap" / "esxcap"
    assert launcher.is_file() and os.access(launcher, os.X_OK)
    listed = tshark("-D", env=installed).stdout
    for name in (
        "esxcap-esx01",
        "esxcap-esx02",
        "esxcap-esx03",
        "esxcap-recipe-web-db",
        "esxcap-recipe-mgmt",
    ):
        assert f". {name} (" in listed, listed
    assert "ESXi esx02 (127.0.0.1) via esxcap" in listed
    status = esxcap("extcap", "status", env=installed)
    assert status.code == 0 and "lists 5 esxcap interface(s)" in status.stdout
    assert esxcap("extcap", "uninstall", env=installed).code == 0
    assert not launcher.exists() and "esxcap-" not in tshark("-D", env=installed).stdout
    assert esxcap("extcap", "status", env=installed).code == 1


@requires_tools
def test_tshark_captures_a_vm_with_esxcap_interface_names(installed, running, tmp_path) -> None:
    out = tmp_path / "out.pcapng"
    result = tshark(
        "-i", "esxcap-esx02", "-o", f"extcap.esxcap_esx02.target:{WEB01}", "-a", "duration:3", "-w", str(out),
        env=installed,
    )  # fmt: skip
    assert "Error by extcap" not in result.stderr, result.stderr
    names, packets = read_back(out.read_bytes())
    assert names == ["esx02:web 01 eth0:VnicRx,VnicTx:both"] and packets
    assert wait_until(lambda: remote_pktcaps(running, "esx02") == [], 30)


@requires_tools
def test_a_capture_filter_reaches_pktcap_uw_as_an_expression(installed, running, tmp_path) -> None:
    out = tmp_path / "filtered.pcapng"
    result = tshark(
        "-i", "esxcap-esx03", "-o", "extcap.esxcap_esx03.target:vm:1:web02", "-f", "tcp port 5432",
        "-a", "duration:3", "-w", str(out), env=installed,
    )  # fmt: skip
    assert "Error by extcap" not in result.stderr, result.stderr
    ports = tshark_fields(out, "tcp.port")
    assert ports and all("5432" in row[0].replace("|", ",").split(",") for row in ports)


@requires_tools
def test_tshark_stopping_at_a_packet_count_leaves_nothing_running(installed, running, tmp_path) -> None:
    out, copy = tmp_path / "five.pcapng", tmp_path / "also saved.pcapng"
    result = tshark(
        "-i", "esxcap-esx02", "-o", f"extcap.esxcap_esx02.target:{WEB01}", "-o", "extcap.esxcap_esx02.dir:in",
        "-o", f"extcap.esxcap_esx02.alsosave:{copy}", "-a", "packets:5", "-w", str(out), env=installed,
    )  # fmt: skip
    assert "Error by extcap" not in result.stderr, result.stderr
    names, packets = read_back(out.read_bytes())
    assert names == ["esx02:web 01 eth0:VnicRx:in"] and len(packets) == 5
    assert wait_until(lambda: remote_pktcaps(running, "esx02") == [], 30)
    assert wait_until(copy.exists, 30) and stat.S_IMODE(copy.stat().st_mode) == 0o600
    saved_names, saved = read_back(copy.read_bytes())
    assert saved_names == names and len(saved) >= 5


@requires_tools
def test_a_recipe_interface_merges_both_ends_of_a_conversation(installed, running, tmp_path) -> None:
    out = tmp_path / "recipe.pcapng"
    result = tshark("-i", "esxcap-recipe-web-db", "-a", "duration:4", "-w", str(out), env=installed)
    assert "Error by extcap" not in result.stderr, result.stderr
    names, packets = read_back(out.read_bytes())
    assert "esx02:web 01 eth0:VnicTx:out" in names and "esx03:データベース01 eth0:VnicRx:in" in names
    assert {p.split(":")[0] for p in packets} == {"esx02", "esx03"}
    assert wait_until(
        lambda: not remote_pktcaps(running, "esx02") and not remote_pktcaps(running, "esx03"), 30
    )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_wiresharks_stop_signals_end_the_remote_capture(env, running, tmp_path, stop) -> None:
    fifo = tmp_path / "wireshark.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    argv = ["--capture", "--extcap-interface", "esxcap-esx03", "--fifo", str(fifo), "--target", "vmk:vmk0"]
    with subprocess.Popen(
        [sys.executable, "-m", "esxcap.cli.extcap", *argv], env=env, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert wait_until(lambda: remote_pktcaps(running, "esx03") != [], 60)
        proc.send_signal(stop)
        assert proc.wait(60) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    reader.join(30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert read_back(reader.data)[0] == ["esx03:vmk0:PortOutput,PortInput:both"]
    assert wait_until(lambda: remote_pktcaps(running, "esx03") == [], 30)


def test_a_closed_fifo_ends_the_capture_cleanly(env, running, tmp_path) -> None:
    """Wireshark on Windows cannot signal an extcap: it closes the FIFO."""
    fifo = tmp_path / "wireshark.fifo"
    os.mkfifo(fifo)
    argv = ["--capture", "--extcap-interface", "esxcap-esx03", "--fifo", str(fifo), "--target", "vmk:vmk0"]
    with subprocess.Popen(
        [sys.executable, "-m", "esxcap.cli.extcap", *argv], env=env, stderr=subprocess.PIPE, text=True
    ) as proc:
        with fifo.open("rb") as reader:
            assert reader.read(4) == b"\x0a\x0d\x0d\x0a"  # a pcapng section starts
            assert wait_until(lambda: remote_pktcaps(running, "esx03") != [], 60)
        assert proc.wait(60) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    assert wait_until(lambda: remote_pktcaps(running, "esx03") == [], 30)


def test_reload_discovers_the_host_then_the_dialog_needs_no_ssh(env, running, inventory, tmp_path) -> None:
    before = check_dialog(
        extcap("--extcap-config", "--extcap-interface", "esxcap-esx02", env=env).stdout.splitlines()
    )
    assert before["--target"] == [] and before["--point"] == []
    reload = extcap(
        "--extcap-config", "--extcap-interface", "esxcap-esx02", "--extcap-reload-option", "target", env=env
    )
    assert reload.returncode == 0 and reload.stderr == ""
    offered = {
        v["value"]
        for kind, v in parse_extcap(reload.stdout.splitlines())
        if kind == "value" and v["arg"] == "0"
    }
    assert len(offered) == len(reload.stdout.splitlines())
    assert {WEB01, 'vm:1:qa "quoted" $(id) & co', "vmk:vmk0", "uplink:vmnic0", "drop"} <= offered
    cache = tmp_path / "cache" / "esxcap" / "discovery" / "esx02.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(
        re.sub(r"port: \d{4,}", "port: 9", inventory.read_text(encoding="utf-8")), encoding="utf-8"
    )
    offline = {**env, "ESXCAP_INVENTORY": str(unreachable)}
    dialog = check_dialog(
        extcap("--extcap-config", "--extcap-interface", "esxcap-esx02", env=offline).stdout.splitlines()
    )
    assert {v["value"] for v in dialog["--target"]} == offered
    assert "VnicRx" in {v["value"] for v in dialog["--point"]}
    assert [v["value"] for v in dialog["--dir"] if v.get("default")] == ["both"]
    listed = parse_extcap(
        extcap("--extcap-interfaces", "--extcap-version=4.0", env=offline).stdout.splitlines()
    )
    assert [f["value"] for k, f in listed if k == "interface"][:3] == [
        "esxcap-esx01",
        "esxcap-esx02",
        "esxcap-esx03",
    ]


def test_every_config_and_dlt_line_is_extcap_syntax(env) -> None:
    for interface in ("esxcap-esx01", "esxcap-recipe-web-db"):
        config = extcap("--extcap-config", "--extcap-interface", interface, env=env)
        assert config.returncode == 0 and config.stderr == ""
        calls = check_dialog(config.stdout.splitlines())
        assert {"--count", "--duration", "--max-bytes", "--snaplen"} <= set(calls)
        assert ("--target" in calls) == (interface == "esxcap-esx01")
        [(kind, dlt)] = parse_extcap(
            extcap("--extcap-interface", interface, "--extcap-dlts", env=env).stdout.splitlines()
        )
        assert kind == "dlt" and dlt["number"] == "1"


def test_unknown_options_from_newer_wiresharks_are_ignored(env) -> None:
    result = extcap(
        "--extcap-interfaces", "--extcap-version=9.9", "--extcap-future-thing", "x", "--debug", env=env
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("extcap {version=")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target", "vm:1:no such vm"], "VM 'no such vm' not found on esx02"),
        (["--target", "bogus"], "target 'bogus' is not one esxcap offers"),
        ([], "no target chosen on esx02"),
        (["--target", WEB01, "--count", "lots"], "count 'lots' is not a number"),
        (
            ["--target", WEB01, "--extcap-capture-filter", "tcp port 80"],
            "no --rcf (pcap filter expressions) before ESXi 7.0",
        ),
    ],
)
def test_errors_are_one_line_on_stderr(env, tmp_path, args, expected) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = extcap("--capture", "--extcap-interface", "esxcap-esx02", "--fifo", str(fifo), *args, env=env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and expected in result.stderr, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_an_unknown_host_key_names_the_command_that_trusts_it(env, inventory, tmp_path) -> None:
    strange = tmp_path / "strange.yaml"
    known = tmp_path / "empty_known_hosts"
    known.write_text("", encoding="utf-8")
    text = inventory.read_text(encoding="utf-8").replace("known_hosts: known_hosts", f"known_hosts: {known}")
    strange.write_text(
        text.replace("identity_file: ", f"identity_file: {inventory.parent}/"), encoding="utf-8"
    )
    result = extcap(
        "--extcap-config", "--extcap-interface", "esxcap-esx02", "--extcap-reload-option", "target",
        env={**env, "ESXCAP_INVENTORY": str(strange)},
    )  # fmt: skip
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "--accept-new" in result.stderr


def test_discover_fills_the_cache_and_the_front_refuses_extcap_options(env, inventory, tmp_path) -> None:
    assert esxcap("-i", str(inventory), "discover", "esx01", env=env).code == 0
    assert (tmp_path / "cache" / "esxcap" / "discovery" / "esx01.json").is_file()
    refused = esxcap("--extcap-interfaces", env=env)
    assert refused.code == 2 and "python -m esxcap.cli.extcap" in refused.stderr
