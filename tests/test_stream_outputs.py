"""`-o` onto a FIFO or a character device (Wireshark's extcap FIFO, /dev/null): `capture` and `merge`
write straight into it and leave it what it was: no `.part`, no rename, no chmod, no sidecar. Other
special files are refused, and a finished file is never renamed over anything but a regular file."""

from __future__ import annotations

import os
import socket
import stat
from io import BytesIO
from pathlib import Path

import pytest
from clirun import CliResult, esxcap, isolated_env
from pcaptools import FifoReader, pcap_stream, sample_records

from esxcap.capture.files import place
from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def packets_in(data: bytes) -> tuple[list[str], int]:
    source = CaptureFile(BytesIO(data), "fifo")
    count = sum(1 for _ in source)
    return [i.name for i in source.interfaces], count


def left_beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)


def capture_to(running: SimulatorThread, env: dict[str, str], out: str, count: int) -> CliResult:
    inventory = str(running.sim.inventory_path)
    return esxcap("-i", inventory, "capture", "--vm", "web 01", "-c", str(count), "-o", out, env=env)


def null_device(path: Path) -> Path:
    """A character device like /dev/null (1, 3), private to the test, mode 0666 like /dev/null."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    path.chmod(0o666)
    return path


def test_capture_into_a_fifo_writes_straight_into_it(running, env, tmp_path) -> None:
    fifo = tmp_path / "wireshark.fifo"
    os.mkfifo(fifo, 0o640)
    reader = FifoReader(fifo)
    reader.start()
    result = capture_to(running, env, str(fifo), 5)
    reader.join(30)
    assert result.code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and stat.S_IMODE(fifo.lstat().st_mode) == 0o640
    assert left_beside(fifo) == []
    assert packets_in(reader.data) == (["esx02:web 01 eth0:VnicRx,VnicTx:both"], 5)


def test_capture_into_a_character_device_keeps_it_a_device(running, env, tmp_path) -> None:
    device = null_device(tmp_path / "null")
    before = device.lstat()
    result = capture_to(running, env, str(device), 3)
    assert result.code == 0, result.stderr
    after = device.lstat()
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_mode == before.st_mode
    assert left_beside(device) == []


def test_capture_to_dev_null_leaves_dev_null_a_device(running, env) -> None:
    before = os.stat("/dev/null")
    result = capture_to(running, env, "/dev/null", 2)
    assert result.code == 0, result.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_mode == before.st_mode
    assert not Path("/dev/null.part").exists() and not Path("/dev/null.json").exists()


def test_capture_refuses_a_socket_and_leaves_it(running, env, tmp_path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        result = capture_to(running, env, str(path), 2)
    assert result.code == 2
    assert "neither a file nor a FIFO nor a character device" in result.stderr
    assert stat.S_ISSOCK(path.lstat().st_mode)


def _two_inputs(tmp_path: Path) -> list[str]:
    paths = []
    for index in range(2):
        path = tmp_path / f"in{index}.pcap"
        path.write_bytes(pcap_stream(sample_records(4, start_ns=(index + 1) * 10**9)))
        paths.append(str(path))
    return paths


def test_merge_into_a_fifo_and_a_device(env, tmp_path) -> None:
    inputs = _two_inputs(tmp_path)
    fifo = tmp_path / "merged.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    result = esxcap("merge", *inputs, "-o", str(fifo), env=env)
    reader.join(30)
    assert result.code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and left_beside(fifo) == []
    assert packets_in(reader.data)[1] == 8
    device = null_device(tmp_path / "null")
    result = esxcap("merge", *inputs, "-o", str(device), env=env)
    assert result.code == 0, result.stderr
    assert stat.S_ISCHR(device.lstat().st_mode) and left_beside(device) == []


def test_a_finished_file_is_never_renamed_over_a_fifo(tmp_path) -> None:
    part, path = tmp_path / "x.pcapng.part", tmp_path / "x.pcapng"
    os.mkfifo(path)
    for force in (False, True):  # not even with --force: the finished file takes a numbered name
        part.write_bytes(b"done")
        placed = place(part, path, force=force)
        assert placed == tmp_path / "x-1.pcapng" and placed.read_bytes() == b"done" and not part.exists()
        assert stat.S_ISFIFO(path.lstat().st_mode)
        placed.unlink()
    path.unlink()
    part.write_bytes(b"done")
    assert place(part, path) == path and path.read_bytes() == b"done" and not part.exists()


def test_bundle_refuses_a_fifo_or_a_device_and_leaves_it(env, tmp_path) -> None:
    [capture, _] = _two_inputs(tmp_path)
    fifo = tmp_path / "bundle.fifo"
    os.mkfifo(fifo)
    device = null_device(tmp_path / "null")
    for out, kind in ((fifo, "FIFO"), (device, "character device")):
        before = out.lstat()
        result = esxcap("bundle", "--ticket", "SR-1", capture, "-o", str(out), env=env)
        assert result.code == 2 and f"is a {kind}" in result.stderr, result.stderr
        after = out.lstat()
        assert (after.st_mode, after.st_rdev) == (before.st_mode, before.st_rdev) and left_beside(out) == []
