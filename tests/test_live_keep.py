"""Watch and keep: `--live` with `-o` (or `--ring`) writes the capture files as usual (private `.part`,
named at the end, sidecar) while the viewer gets the same bytes (with a ring: every segment's packets, in
one stream); a viewer that closes early or falls behind is told about and left, and the file capture
goes on to its normal stop. The real CLI runs against the simulator with a stand-in for tshark's live
viewer (`tshark -l -i -`, chosen when there is no display) that keeps what it reads; other tshark calls
(the --console summaries) go to the real tshark."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from clirun import CliResult, esxcap, isolated_env
from pcaptools import TSHARK

from esxcap.capture.destinations import choose_output
from esxcap.capture.ring import RingSpec
from esxcap.capture.tee import ViewerFeed
from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile
from esxcap.sim import SimulatorThread

requires_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")


def viewer_env(tmp_path: Path, reads: str) -> dict[str, str]:
    """An environment whose live viewer is a stand-in running `reads` (a shell command reading the
    stream on stdin; $COPY names the file to keep it in); its argv is kept in $ARGS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "tshark"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        f'  *" -i "*) printf "%s\\n" "$*" > "{tmp_path}/viewer-args"\n'
        f'    COPY="{tmp_path}/viewer-copy"; {reads} ;;\n'
        f'  *) exec "{TSHARK}" "$@" ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = isolated_env(tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def packets(path: Path) -> list[tuple[str, int, bytes]]:
    with path.open("rb") as handle:
        source = CaptureFile(handle, path.name)
        records = list(source)
        return [(source.interfaces[r.interface].name, r.ts_ns, bytes(r.data)) for r in records]


def live_capture(running: SimulatorThread, tmp_path: Path, reads: str, *args: str) -> tuple[CliResult, Path]:
    """`capture --host esx03 ARGS --live -o FILE` with a viewer that runs `reads` (see viewer_env)."""
    out = tmp_path / "kept.pcapng"
    result = esxcap(
        "-i", str(running.sim.inventory_path), "capture", "--host", "esx03", *args, "-d", "60",
        "--live", "-o", str(out), env=viewer_env(tmp_path, reads), timeout=180,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    return result, out


@requires_tshark
def test_live_with_a_file_shows_the_viewer_every_byte_of_the_file(
    running: SimulatorThread, tmp_path: Path
) -> None:
    args = ("--vm", "web02", "--vmk", "vmk0", "-c", "4", "--console")
    result, out = live_capture(running, tmp_path, 'exec cat > "$COPY"', *args)
    assert (tmp_path / "viewer-args").read_text().split() == ["-l", "-i", "-"]
    assert (tmp_path / "viewer-copy").read_bytes() == out.read_bytes()
    kept = packets(out)
    assert len(kept) == 8  # 4 per stream: web02's (VnicRx,VnicTx) and vmk0's (--dir 2), merged
    assert (tmp_path / "kept.pcapng.json").is_file()
    assert not list(tmp_path.glob("*.part"))
    assert len([line for line in result.stdout.splitlines() if "] esx03 " in line]) == len(kept)


@requires_tshark
def test_a_viewer_that_closes_early_leaves_the_file_capture_running(
    running: SimulatorThread, tmp_path: Path
) -> None:
    result, out = live_capture(running, tmp_path, 'head -c 100 > "$COPY"', "--vm", "web02", "-c", "12")
    assert "the viewer closed: it gets no more packets; the capture goes on into the file" in result.stderr
    assert len(packets(out)) == 12
    copy = (tmp_path / "viewer-copy").read_bytes()
    assert len(copy) == 100 and out.read_bytes().startswith(copy)


@requires_tshark
def test_live_with_a_ring_shows_the_viewer_every_packet_of_every_segment(
    fast_sim: SimulatorThread, tmp_path: Path
) -> None:
    """n1's pings (200 a second) into a ring of 8 KiB segments, with the viewer watching: the viewer's
    one stream holds the packets of all segments, in order, each once."""
    out = tmp_path / "ring"
    result = esxcap(
        "-i", str(fast_sim.sim.inventory_path), "capture", "--vm", "n1", "--dir", "out", "--proto", "icmp",
        "-c", "400", "--ring", "filesize:8k", "--live", "-o", f"{out}/",
        env=viewer_env(tmp_path, 'exec cat > "$COPY"'), timeout=180,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    segments = sorted(out.glob("*_[0-9][0-9][0-9][0-9][0-9]_*Z.pcapng"))
    assert len(segments) >= 3
    in_segments = [packet for segment in segments for packet in packets(segment)]
    assert len(in_segments) == 400
    assert packets(tmp_path / "viewer-copy") == in_segments


@requires_tshark
def test_live_with_a_trigger_shows_every_packet_while_the_event_is_kept(
    fast_sim: SimulatorThread, tmp_path: Path
) -> None:
    out = tmp_path / "events"
    result = esxcap(
        "-i", str(fast_sim.sim.inventory_path), "recipe", "vm-to-vm", "m2", "n1", "--trigger", "tcp-rst",
        "--before", "1", "--after", "0.3", "-d", "30", "--live", "-o", f"{out}/",
        env=viewer_env(tmp_path, 'exec cat > "$COPY"'), timeout=180,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    [event] = out.glob("*_trigger001_*Z.pcapng")
    watched = {(ts, data) for _name, ts, data in packets(tmp_path / "viewer-copy")}
    kept = {(ts, data) for _name, ts, data in packets(event)}
    assert kept and kept <= watched and len(watched) > len(kept)


@pytest.mark.parametrize(
    ("out", "split", "refused"),
    [
        ("-", False, "--live and -o - both take the stream"),
        (None, True, "--split reads the finished file"),
    ],
)
def test_what_still_makes_no_sense_with_live_is_refused(out: str | None, split: bool, refused: str) -> None:
    with pytest.raises(UsageError) as caught:
        choose_output(out, True, False, split)
    assert refused in caught.value.message


def test_live_with_a_file_or_folder_keeps_it(tmp_path: Path) -> None:
    to_file = choose_output(str(tmp_path / "c.pcapng"), True, True, split=True, path=True)
    assert (to_file.live, to_file.file, to_file.split) == (True, tmp_path / "c.pcapng", True)
    to_folder = choose_output(f"{tmp_path}/", True, True)
    assert (to_folder.live, to_folder.directory) == (True, tmp_path)
    assert choose_output(None, True, True).paths is False


def test_live_watches_a_ring_but_not_the_rings_of_split(tmp_path: Path) -> None:
    spec = RingSpec(filesize=1 << 20)
    ring = choose_output(f"{tmp_path}/", True, True, ring=spec)
    assert (ring.live, ring.directory, ring.ring) == (True, tmp_path, spec)
    with pytest.raises(UsageError) as caught:
        choose_output(f"{tmp_path}/", True, True, split=True, ring=spec)
    assert "--ring --split writes a separate ring per stream" in caught.value.message


def test_a_viewer_that_stops_reading_is_left_behind(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    told: list[str] = []
    feed = ViewerFeed(os.fdopen(write_end, "wb"), told.append, max_behind=1 << 20)
    block = bytes(range(256)) * 256
    for _ in range(80):  # 5 MiB, nothing read: the pipe takes 64 KiB, the queue 1 MiB
        assert feed.write(block) == len(block)
    assert told == [
        "the viewer fell more than 1 MiB behind: it gets no more packets; the capture goes on into the file"
    ]
    seen = bytearray()
    reader = threading.Thread(target=lambda: _read_all(read_end, seen))
    reader.start()
    feed.close()
    reader.join(timeout=30)
    os.close(read_end)
    sent = len(seen) // len(block)  # whole writes: what was queued, and the one being written
    assert 0 < sent <= (1 << 20) // len(block) + 1 and seen == block * sent
    assert len(told) == 1


def _read_all(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 1 << 20):
        into += chunk
