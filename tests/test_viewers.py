"""Viewers: which program opens a file or a live stream (Wireshark with a display, else tshark; a clear
usage error naming what to install when neither exists), and the long-running tshark behind `--console`:
one line per packet in feed order as packets arrive, clean shutdown, and esxcap's own summaries when
tshark dies, is missing, or falls behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pcaptools import TSHARK, pcap_stream, sample_records

from esxcap.capture.viewers import (
    TsharkSummarizer,
    display_available,
    find_tshark,
    find_wireshark,
    install_hint,
    live_viewer_command,
    open_file_command,
    start_viewer,
)
from esxcap.errors import UsageError
from esxcap.pcap import Record
from esxcap.pcap.decode import console_line, hexdump

requires_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")
LABEL = "esx01 web01 VnicTx"


def executable(directory: Path, name: str, body: str = "exit 0") -> str:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is the whole PATH, with no display."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return directory


# --- finding and choosing viewers --------------------------------------------------------------------


def test_missing_tshark_is_a_usage_error_naming_what_to_install(bin_dir: Path) -> None:
    assert find_tshark() is None
    assert find_wireshark() is None
    with pytest.raises(UsageError) as opened:
        open_file_command("cap.pcapng")
    with pytest.raises(UsageError) as live:
        live_viewer_command()
    for caught, option in ((opened, "--open"), (live, "--live")):
        assert option in caught.value.message and "tshark" in caught.value.message
        assert caught.value.hint is not None and "apt-get install tshark" in caught.value.hint


def test_install_hint_per_platform() -> None:
    assert "apt-get install tshark" in install_hint("linux")
    for platform in ("darwin", "win32"):
        assert "https://www.wireshark.org/download.html" in install_hint(platform)


def test_display_detection() -> None:
    assert display_available({"DISPLAY": ":0"}, "linux")
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not display_available({"SSH_CONNECTION": "x"}, "linux")
    assert not display_available({"DISPLAY": ""}, "freebsd14")
    assert display_available({}, "darwin")
    assert display_available({}, "win32")


def test_wireshark_with_a_display_else_tshark(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tshark = executable(bin_dir, "tshark")
    assert open_file_command("/c/x.pcapng") == [tshark, "-r", "/c/x.pcapng"]
    assert live_viewer_command() == [tshark, "-l", "-i", "-"]
    monkeypatch.setenv("DISPLAY", ":0")
    assert open_file_command(Path("x.pcapng")) == [tshark, "-r", "x.pcapng"]  # no Wireshark installed
    wireshark = executable(bin_dir, "wireshark")
    assert find_wireshark() == wireshark
    assert open_file_command("-odd name.pcapng") == [wireshark, "-r", "-odd name.pcapng"]
    assert live_viewer_command() == [wireshark, "-k", "-i", "-"]
    monkeypatch.delenv("DISPLAY")
    assert live_viewer_command() == [tshark, "-l", "-i", "-"]


def test_started_viewer_reads_stdin_in_its_own_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = "import os, sys; open(sys.argv[1], 'w').write(f'{os.getsid(0)} {len(sys.stdin.buffer.read())}')"
    process = start_viewer([sys.executable, "-c", code, str(out)])
    assert process.stdin is not None
    process.stdin.write(b"x" * 100_000)
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    assert out.read_text() == f"{process.pid} 100000"


@requires_tshark
def test_live_tshark_command_reads_a_pcap_stream(bin_dir: Path) -> None:
    assert TSHARK is not None
    os.symlink(TSHARK, bin_dir / "tshark")
    argv = live_viewer_command()
    stream = pcap_stream(sample_records(5))
    result = subprocess.run(argv, input=stream, capture_output=True, timeout=60, check=False, env=_tool_env())
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.decode().splitlines()) == 5


def _tool_env() -> dict[str, str]:
    """The environment with the system PATH back, for tshark's own helpers (dumpcap)."""
    return {**os.environ, "PATH": f"{os.environ['PATH']}:/usr/bin:/bin"}


# --- the console summarizer ------------------------------------------------------------------------


def records(count: int) -> list[Record]:
    return sample_records(count)


def wait_for_lines(summarizer: TsharkSummarizer, count: int, timeout: float = 30.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        lines += summarizer.ready()
        time.sleep(0.01)
    return lines


def tshark_style(line: str) -> bool:
    """tshark's summary has `SRC > DST PROTOCOL`; esxcap's own separates layers with commas."""
    return ": 10.0.0.1 > 10.0.0.2 DNS " in line


def builtin_style(line: str) -> bool:
    return ", 10.0.0.1 > 10.0.0.2, UDP " in line


def assert_in_order(lines: list[str], recs: list[Record], start: int = 1) -> None:
    assert len(lines) == len(recs)
    for number, (line, record) in enumerate(zip(lines, recs, strict=True), start):
        prefix = console_line(record, LABEL, number, summary="").removesuffix(" ")
        assert line.startswith(prefix), (number, line, prefix)


@requires_tshark
def test_tshark_lines_arrive_per_packet_in_order_and_it_shuts_down_cleanly() -> None:
    warnings: list[str] = []
    recs = records(200)
    summarizer = TsharkSummarizer(TSHARK, warn=warnings.append)
    collected: list[str] = []
    consumer = threading.Thread(target=lambda: collected.extend(summarizer.lines()))
    consumer.start()
    summarizer.feed(recs[0], LABEL, 1)
    deadline = time.monotonic() + 30
    while not collected and time.monotonic() < deadline:  # a packet's line comes while the stream is open
        time.sleep(0.01)
    assert len(collected) == 1
    for number, record in enumerate(recs[1:], 2):
        summarizer.feed(record, LABEL, number)
    summarizer.close()
    consumer.join(timeout=30)
    assert not consumer.is_alive()
    assert_in_order(collected, recs)
    assert all(tshark_style(line) for line in collected), collected[:3]
    assert summarizer.process is not None and summarizer.process.returncode == 0
    assert summarizer.failure is None and warnings == []
    summarizer.close()  # closing twice is harmless
    assert summarizer.ready() == []


@requires_tshark
def test_tshark_dying_mid_stream_is_reported_once_and_builtin_summaries_take_over() -> None:
    warnings: list[str] = []
    recs = records(100)
    summarizer = TsharkSummarizer(TSHARK, warn=warnings.append)
    for number, record in enumerate(recs[:50], 1):
        summarizer.feed(record, LABEL, number)
    first = wait_for_lines(summarizer, 50)
    assert summarizer.process is not None
    summarizer.process.kill()
    summarizer.process.wait(timeout=30)
    for number, record in enumerate(recs[50:], 51):
        summarizer.feed(record, LABEL, number)
    summarizer.close()
    rest = summarizer.ready()
    assert_in_order(first + rest, recs)
    assert all(tshark_style(line) for line in first)
    assert all(builtin_style(line) for line in rest)
    assert len(warnings) == 1 and warnings[0].startswith("tshark stopped (exit status -9")


def test_tshark_failing_at_start_says_why_and_loses_no_packet(tmp_path: Path) -> None:
    broken = executable(
        tmp_path, "tshark", 'echo "tshark: The standard input is not a capture file" >&2; exit 2'
    )
    warnings: list[str] = []
    recs = records(20)
    summarizer = TsharkSummarizer(broken, warn=warnings.append)
    for number, record in enumerate(recs, 1):
        summarizer.feed(record, LABEL, number)
    lines = wait_for_lines(summarizer, 20)
    summarizer.close()
    lines += summarizer.ready()
    assert_in_order(lines, recs)
    assert all(builtin_style(line) for line in lines)
    assert warnings == [
        "tshark stopped (exit status 2: tshark: The standard input is not a capture file); "
        "esxcap's own packet summaries follow"
    ]


@requires_tshark
def test_packets_beyond_the_in_flight_limit_use_builtin_summaries_in_order() -> None:
    recs = records(40)
    with TsharkSummarizer(TSHARK, max_in_flight=2, warn=pytest.fail) as summarizer:
        for number, record in enumerate(recs, 1):
            summarizer.feed(record, LABEL, number)
    lines = summarizer.ready()
    assert_in_order(lines, recs)
    assert tshark_style(lines[0]) and tshark_style(lines[1])
    assert sum(map(builtin_style, lines)) >= 20
    assert sum(map(tshark_style, lines)) + sum(map(builtin_style, lines)) == 40


def test_without_tshark_lines_are_ready_at_once_with_hex_dumps() -> None:
    recs = records(3)
    summarizer = TsharkSummarizer(None, hex_dump=True)
    summarizer.feed(recs[0], LABEL, 1)
    assert summarizer.ready() == [f"{console_line(recs[0], LABEL, 1)}\n{hexdump(recs[0].data)}"]
    summarizer.feed(recs[1], LABEL, 2)
    summarizer.feed(recs[2], LABEL, 3)
    summarizer.close()
    assert len(summarizer.ready()) == 2
    assert summarizer.process is None and summarizer.failure is None
    assert list(summarizer.lines()) == []
    with pytest.raises(ValueError, match="after close"):
        summarizer.feed(recs[0], LABEL, 4)


@requires_tshark
def test_tshark_hex_dump_follows_its_summary() -> None:
    recs = records(2)
    with TsharkSummarizer(TSHARK, hex_dump=True) as summarizer:
        summarizer.feed(recs[0], LABEL, 1)
        summarizer.feed(recs[1], LABEL, 2)
    lines = summarizer.ready()
    assert len(lines) == 2
    for line, record in zip(lines, recs, strict=True):
        summary, dump = line.split("\n", 1)
        assert tshark_style(summary) and dump == hexdump(record.data)


def test_a_hung_tshark_is_stopped_at_close_and_its_packets_still_shown(tmp_path: Path) -> None:
    hung = executable(tmp_path, "tshark", "exec sleep 60")
    warnings: list[str] = []
    recs = records(5)
    summarizer = TsharkSummarizer(hung, warn=warnings.append)
    for number, record in enumerate(recs, 1):
        summarizer.feed(record, LABEL, number)
    started = time.monotonic()
    summarizer.close(timeout=0.5)
    assert time.monotonic() - started < 10
    lines = summarizer.ready()
    assert_in_order(lines, recs)
    assert all(builtin_style(line) for line in lines)
    assert summarizer.process is not None and summarizer.process.returncode == -9
    assert len(warnings) == 1 and "exit status -9" in warnings[0]
