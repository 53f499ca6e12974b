"""The files esxcap writes, in folders other users can write to: planted symlinks are never followed,
existing files are not replaced without --force, each run writes its own `.part`, and a destination
that cannot be written is refused before any host is contacted."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import CliResult, esxcap, isolated_env
from conftest import FAST_TOPOLOGY

from esxcap.capture.files import create_private
from esxcap.capture.sinks import CaptureSink
from esxcap.pcap import CaptureFile, Interface, PcapngWriter, Record
from esxcap.sim import SimulatorThread, topology_from_data

VICTIM_TEXT = b"someone else's file\n"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("outputs")
    with SimulatorThread(topology_from_data(FAST_TOPOLOGY, "<fast>"), base / "sim") as running:
        yield {"inventory": str(running.sim.inventory_path), "env": isolated_env(base)}


def capture(fast: dict[str, Any], *args: str, cwd: Path | None = None) -> CliResult:
    return esxcap(
        "-i", fast["inventory"], "capture", "--vm", "m2", "-c", "5", *args, env=fast["env"], cwd=cwd
    )


def packets(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in CaptureFile(handle, path.name))


def victim(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "precious.txt"
    path.write_bytes(VICTIM_TEXT)
    path.chmod(0o644)
    return path


def untouched(path: Path) -> bool:
    return path.read_bytes() == VICTIM_TEXT and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_create_private_never_follows_or_truncates_what_is_there(tmp_path: Path) -> None:
    target = victim(tmp_path / "other")
    link = tmp_path / "out.pcapng.part"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        create_private(link)
    with pytest.raises(FileExistsError):
        create_private(target)
    assert untouched(target)


def test_planted_part_and_sidecar_symlinks_leave_the_victims_file_alone(fast, tmp_path: Path) -> None:
    target = victim(tmp_path / "other")
    out = tmp_path / "shared" / "out.pcapng"
    out.parent.mkdir()
    for planted in ("out.pcapng.part", "out.pcapng.json.part", "out.pcapng.json"):
        (out.parent / planted).symlink_to(target)
    result = capture(fast, "-o", str(out))
    assert result.code == 0, result.stderr
    assert untouched(target) and packets(out) == 5
    sidecar = out.with_name("out.pcapng.json")
    assert not sidecar.is_symlink() and b'"packets": 5' in sidecar.read_bytes()


def test_an_existing_output_is_kept_unless_forced_and_the_message_says_so(fast, tmp_path: Path) -> None:
    out = tmp_path / "out.pcapng"
    out.write_bytes(VICTIM_TEXT)
    refused = capture(fast, "-o", str(out))
    assert refused.code == 2 and out.read_bytes() == VICTIM_TEXT
    assert f"{out} already exists" in " ".join(refused.stderr.split()) and "--force" in refused.stderr
    forced_text = capture(fast, "-o", str(out), "--force")  # --force replaces captures, not any file
    assert forced_text.code == 2 and out.read_bytes() == VICTIM_TEXT
    assert "not a capture or an archive" in " ".join(forced_text.stderr.split())
    out.write_bytes(b"\x0a\x0d\x0d\x0a" + VICTIM_TEXT)  # an earlier capture's file
    forced = capture(fast, "-o", str(out), "--force")
    assert forced.code == 0, forced.stderr
    assert packets(out) == 5


def test_two_runs_writing_one_name_never_share_a_part(tmp_path: Path) -> None:
    out = tmp_path / "same.pcapng"
    sinks = [CaptureSink(out, [f"run {n}"]) for n in range(2)]
    assert len({sink.part for sink in sinks}) == 2
    barrier = threading.Barrier(2)

    def run(n: int, sink: CaptureSink) -> None:
        sink.expect_stream()
        iface = sink.add_stream(Interface(f"stream{n}"))
        barrier.wait()
        for i in range(200):
            sink.push(iface, [Record(1_700_000_000_000_000_000 + i, 60, bytes([n]) * 60)])

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in enumerate(sinks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = sorted(str(sink.finish(1_700_000_001_000_000_000)) for sink in sinks)
    assert written == [str(tmp_path / "same-1.pcapng"), str(out)]
    assert [packets(Path(p)) for p in written] == [200, 200]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same-1.pcapng", "same.pcapng"]


def test_unwritable_destinations_are_refused_before_connecting(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("hosts:\n  esx-gone:\n    hostname: 127.0.0.1\n    port: 1\n")
    env = isolated_env(tmp_path)
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    cases = {
        tmp_path / "missing" / "dir" / "x.pcapng": "does not exist",
        a_file / "x.pcapng": "is not a folder",
        Path("/proc/esxcap-x.pcapng"): "cannot create",
    }
    for out, why in cases.items():
        result = esxcap("-i", str(inventory), "capture", "--vmk", "vmk0", "-o", str(out), env=env)
        shown = " ".join(result.stderr.split())
        assert result.code == 2 and why in shown and str(out.parent) in shown, result.stderr
        assert "Traceback" not in result.stderr and "next:" in result.stderr
    assert not (tmp_path / "missing").exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".esxcap-probe")]


def block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def crafted_pcapng(tsoffset_s: int, tsresol: int, ts: int) -> bytes:
    """One packet whose interface clock (if_tsoffset, if_tsresol) puts it before 1970 or far past 2554."""
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    options = struct.pack("<HH", 9, 1) + bytes([tsresol, 0, 0, 0])
    options += struct.pack("<HHq", 14, 8, tsoffset_s) + struct.pack("<HH", 0, 0)
    idb = block(1, struct.pack("<HHI", 1, 0, 65535) + options)
    epb = block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, 60, 60) + bytes(60))
    return shb + idb + epb


@pytest.fixture
def two_captures(tmp_path: Path) -> tuple[Path, Path]:
    made = []
    for name, start in (("a.pcapng", 0), ("b.pcapng", 500)):
        path = tmp_path / name
        with path.open("wb") as handle:
            writer = PcapngWriter(handle)
            writer.add_interface(Interface(name))
            for i in range(10):
                writer.write_packet(0, 1_700_000_000_000_000_000 + start + i * 1000, bytes(60))
        made.append(path)
    return made[0], made[1]


def merge(tmp_path: Path, *args: str) -> CliResult:
    return esxcap("merge", *args, env=isolated_env(tmp_path), cwd=tmp_path)


def test_merge_refuses_an_output_that_is_one_of_its_inputs(tmp_path: Path, two_captures) -> None:
    a, b = two_captures
    before = a.read_bytes()
    for extra in ((), ("--force",)):
        result = merge(tmp_path, str(a), str(b), "-o", str(a), *extra)
        assert result.code == 2 and f"the output {a} is also one of the inputs" in result.stderr
    assert a.read_bytes() == before and sorted(p.name for p in tmp_path.glob("*.pcapng*")) == [
        "a.pcapng",
        "b.pcapng",
    ]


def test_merge_takes_a_file_given_twice_once_and_warns_on_a_truncated_input(
    tmp_path: Path, two_captures
) -> None:
    a, b = two_captures
    data = b.read_bytes()
    b.write_bytes(data[:-30])
    out = tmp_path / "m.pcapng"
    result = merge(tmp_path, str(a), str(a), "./a.pcapng", str(b), "-o", str(out))
    shown = " ".join(result.stderr.split())
    assert result.code == 0, result.stderr
    assert packets(out) == 19 and "19 packets from 2 files" in shown
    assert shown.count("is the same file as") == 2 and "b.pcapng ends in the middle of a packet" in shown


def test_merge_into_a_full_device_is_a_clear_error(tmp_path: Path, two_captures) -> None:
    """The output is written by a thread of its own: its write error still ends the merge, named."""
    a, b = two_captures
    result = merge(tmp_path, str(a), str(b), "-o", "/dev/full")
    assert result.code == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot write the merged file /dev/full: No space left on device" in " ".join(
        result.stderr.split()
    )


def test_merge_of_crafted_timestamps_is_a_clear_error_leaving_nothing(tmp_path: Path, two_captures) -> None:
    a, _b = two_captures
    for name, data in (
        ("before-1970.pcapng", crafted_pcapng(-(10**10), 6, 0)),
        ("past-2554.pcapng", crafted_pcapng(0, 0, 1 << 40)),
    ):
        crafted = tmp_path / name
        crafted.write_bytes(data)
        out = tmp_path / f"m-{name}"
        result = merge(tmp_path, str(a), str(crafted), "-o", str(out))
        assert result.code != 0 and "outside what pcapng can hold" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not list(tmp_path.glob("m-*"))


def test_a_closed_reader_of_stdout_ends_the_capture_quietly(fast, tmp_path: Path) -> None:
    """`esxcap capture -o - | head -c 3000`: the capture stops when head has what it wanted, exit 0, no
    advice about disk space; a table piped to a reader that leaves early ends quietly too."""
    argv = [
        sys.executable,
        "-m",
        "esxcap",
        "-i",
        fast["inventory"],
        "capture",
        "--vm",
        "m2",
        "-d",
        "60",
        "-o",
        "-",
    ]
    started = time.monotonic()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=fast["env"]) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        head = proc.stdout.read(3000)
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert len(head) == 3000 and head[:4] == b"\x0a\x0d\x0d\x0a"
    assert code == 0, stderr
    assert time.monotonic() - started < 50
    assert "free some space" not in stderr and "Traceback" not in stderr and "error:" not in stderr
    hosts = subprocess.run(
        f"{sys.executable} -m esxcap -i {fast['inventory']} discover | head -n 1",
        shell=True, env=fast["env"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert hosts.returncode == 0 and hosts.stdout.count("\n") == 1
    assert "Traceback" not in hosts.stderr and "Broken pipe" not in hosts.stderr, hosts.stderr
