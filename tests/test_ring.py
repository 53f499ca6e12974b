"""`--ring`: a capture kept as rolling segments, end to end with the real CLI against the simulator and
each segment read back with capinfos/tshark: no packet lost or doubled at a rotation (the simulator's
ICMP sequence numbers), files:K keeps the newest K, names sort, interval segments keep to the clock,
many hosts merged and --split, refusals before connecting, and `bundle --last/--around`."""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from itertools import pairwise
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env
from pcaptools import BASE_NS, capinfos, requires_tools, tshark_fields, udp_frame

from esxcap.capture.ring import Ring, RingSpec, parse_ring
from esxcap.capture.ringpick import parse_time, segment_start
from esxcap.errors import UsageError
from esxcap.pcap import CaptureFile, Interface, encode_epb
from esxcap.sim import SimulatorThread

pytestmark = requires_tools

PINGS = ("--vm", "n1", "--dir", "out", "--proto", "icmp")
"""n1's echo requests to m1 (200 a second, ICMP sequence numbers one apart)."""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def capture(st: SimulatorThread, env: dict[str, str], *args: str) -> tuple[int, str]:
    result = esxcap("-i", str(st.sim.inventory_path), "capture", *args, env=env)
    return result.code, result.stderr


def ring_of_pings(st: SimulatorThread, env: dict[str, str], out: Path, *args: str) -> tuple[list[Path], str]:
    """Capture n1's pings into a ring in `out`; its segments (in name order) and what stderr said."""
    code, stderr = capture(st, env, *PINGS, *args, "-o", f"{out}/")
    assert code == 0, stderr
    return segments_in(out), stderr


def segments_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*_[0-9][0-9][0-9][0-9][0-9]_*Z.pcapng"))


def packets(path: Path) -> int:
    return int(capinfos(path).general["Number of packets"][0])


def ping_seqs(segments: list[Path]) -> list[int]:
    return [int(row[0]) for s in segments for row in tshark_fields(s, "icmp.seq")]


def assert_consecutive(seqs: list[int]) -> None:
    assert seqs, "no packets"
    assert [(b - a) % 65536 for a, b in pairwise(seqs)] == [1] * (len(seqs) - 1)


def sidecar(folder: Path) -> dict[str, object]:
    [path] = folder.glob("*.json")
    document = json.loads(path.read_text())
    assert isinstance(document, dict)
    return document


def test_rotation_keeps_every_packet_once_in_order(fast_sim, env, tmp_path) -> None:
    out = tmp_path / "ring"
    segments, _ = ring_of_pings(fast_sim, env, out, "-c", "600", "--ring", "filesize:8k")
    assert len(segments) >= 4
    assert [int(s.name.rsplit("_", 2)[1]) for s in segments] == list(range(1, len(segments) + 1))
    assert all(s.stat().st_size <= 8192 for s in segments)
    assert sum(packets(s) for s in segments) == 600
    assert_consecutive(ping_seqs(segments))
    stamps = [float(r[0]) for s in segments for r in tshark_fields(s, "frame.time_epoch")]
    assert stamps == sorted(stamps)
    for segment in segments:
        info = capinfos(segment)
        assert [i["Name"] for i in info.interfaces] == [["new:n1 eth0:VnicTx:out"]]
        assert info.interfaces[0]["Description"]  # the same description in every segment
    listed = sidecar(out)["ring"]
    assert isinstance(listed, dict) and listed["rotated_out"] == 0
    assert [(s["file"], s["packets"]) for s in listed["segments"]] == [(s.name, packets(s)) for s in segments]
    assert not list(out.glob("*.part"))


def test_files_k_keeps_the_newest_k_segments(fast_sim, env, tmp_path) -> None:
    out = tmp_path / "ring"
    segments, stderr = ring_of_pings(fast_sim, env, out, "-c", "600", "--ring", "files:3,filesize:8k")
    assert len(segments) == 3
    numbers = [int(s.name.rsplit("_", 2)[1]) for s in segments]
    assert numbers[0] > 1 and numbers == list(range(numbers[0], numbers[0] + 3))
    listed = sidecar(out)["ring"]
    assert isinstance(listed, dict) and listed["rotated_out"] == numbers[0] - 1
    assert [s["file"] for s in listed["segments"]] == [s.name for s in segments]
    seqs = ping_seqs(segments)
    assert_consecutive(seqs)
    assert len(seqs) < 600 and sum(s.stat().st_size for s in segments) <= 3 * 8192  # the bound on disk
    assert "older rotated out" in stderr


def test_interval_segments_keep_to_whole_seconds_of_the_clock(fast_sim, env, tmp_path) -> None:
    out = tmp_path / "ring"
    segments, _ = ring_of_pings(fast_sim, env, out, "-d", "3", "--ring", "interval:1")
    assert len(segments) >= 3
    seconds = []
    for segment in segments:
        stamps = [float(r[0]) for r in tshark_fields(segment, "frame.time_epoch")]
        assert int(stamps[0]) == int(stamps[-1])
        assert time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(stamps[0])) in segment.name
        seconds.append(int(stamps[0]))
    assert seconds == sorted(set(seconds))
    assert_consecutive(ping_seqs(segments))


def test_many_hosts_merge_into_one_ring_and_split_gives_each_stream_its_own(fast_sim, env, tmp_path) -> None:
    merged = tmp_path / "merged"
    vmks = ("--vmk", "vmk0", "--host", "mid", "--host", "new", "-c", "200")
    result = esxcap(
        "-i", str(fast_sim.sim.inventory_path), "capture", *vmks, "--ring", "filesize:12k",
        "-o", f"{merged}/", "--json", env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    streams = result.json()["streams"]
    segments = segments_in(merged)
    assert len(segments) >= 2
    assert sum(packets(s) for s in segments) == sum(s["packets"] for s in streams) > 0
    names = {s["interface"] for s in streams}
    for segment in segments:
        assert {n for i in capinfos(segment).interfaces for n in i["Name"]} == names
    stamps = [float(r[0]) for s in segments for r in tshark_fields(s, "frame.time_epoch")]
    assert stamps == sorted(stamps)

    split = tmp_path / "split"
    result = esxcap(
        "-i", str(fast_sim.sim.inventory_path), "capture", *vmks, "--ring", "filesize:12k", "--split",
        "-o", f"{split}/", "--json", env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    for stream in result.json()["streams"]:
        host = stream["host"]
        own = [s for s in segments_in(split) if f"-{host}-vmk0" in s.name]
        assert len(own) >= 2
        assert sum(packets(s) for s in own) == stream["packets"]
        assert all(capinfos(s).interfaces[0]["Name"] == [stream["interface"]] for s in own)
        assert all(len(capinfos(s).interfaces) == 1 for s in own)


def test_a_ring_without_room_or_without_files_is_refused_before_connecting(env, tmp_path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("hosts:\n  esx01:\n    hostname: 127.0.0.1\n    port: 1\n")
    out = tmp_path / "ring"
    out.mkdir()

    def refused(*args: str) -> str:
        result = esxcap("-i", str(inventory), "capture", "--vmk", "vmk0", *args, env=env)
        assert result.code == 2, result.stderr
        assert "esx01" not in result.stderr  # nothing connected
        return " ".join(result.stderr.split())

    shown = refused("--ring", "files:100000,filesize:100G", "-o", f"{out}/")
    assert f"{out} has" in shown and "free; the ring needs" in shown and "free some space" in shown
    assert "writes segment files; -o - is a stream" in refused("--ring", "filesize:1M", "-o", "-")
    assert "--ring --split writes a separate ring per stream" in refused(
        "--ring", "filesize:1M", "--live", "--split"
    )
    assert "--open reads one finished file; a ring is many" in refused("--ring", "filesize:1M", "--open")
    assert "says when to start a new segment" in refused("--ring", "files:3")
    assert "'size:3' is not one of" in refused("--ring", "size:3")
    assert "a size of at least 4K" in refused("--ring", "filesize:1")
    assert not any(out.iterdir())


def test_parse_ring_reads_each_setting() -> None:
    assert parse_ring("files:5,filesize:20M") == RingSpec(files=5, filesize=20 << 20)
    assert parse_ring("interval:60") == RingSpec(interval=60.0)
    assert parse_ring("duration:30, files:2").bound is None
    with pytest.raises(UsageError, match="both time segments"):
        parse_ring("duration:30,interval:60")


def test_a_ring_cuts_between_blocks_only(tmp_path) -> None:
    """Blocks written in batches of any size land whole in segments no larger than filesize."""
    ring = Ring(tmp_path / "unit", RingSpec(files=4, filesize=4096), ["unit test"])
    ring.add_interface(Interface("a:b:c", 1, 0, "first"))
    ring.add_interface(Interface("d:e:f", 1, 0, "second"))
    blocks = [
        encode_epb(seq % 2, BASE_NS + seq * 1000, udp_frame(seq, seq % 2, 18 + seq % 50))
        for seq in range(500)
    ]
    for start in range(0, 500, 37):
        batch = blocks[start : start + 37]
        ring.write_blocks([b"".join(batch)], len(batch))
    ring.flush()
    kept = sorted(tmp_path.glob("unit_*.pcapng"))
    assert [s.path for s in ring.segments] == kept and len(kept) == 4
    assert all(s.stat().st_size <= 4096 for s in kept)
    seqs = []
    for segment in kept:
        with segment.open("rb") as handle:
            source = CaptureFile(handle, segment.name)
            seqs += [int.from_bytes(bytes(r.data[44:48]), "big") for r in source]
            assert [i.name for i in source.interfaces] == ["a:b:c", "d:e:f"]
    assert seqs == list(range(seqs[0], 500))
    assert ring.rotated_out > 0


def bundled(archive: Path) -> list[str]:
    """The capture files in a bundle archive, by name."""
    with zipfile.ZipFile(archive) as bundle:
        return sorted(Path(n).name for n in bundle.namelist() if n.endswith(".pcapng"))


def test_bundle_picks_the_last_segments_or_those_around_a_time(fast_sim, env, tmp_path) -> None:
    out = tmp_path / "ring"
    segments, _ = ring_of_pings(fast_sim, env, out, "-d", "4", "--ring", "interval:1")
    assert len(segments) >= 4
    inv = ("-i", str(fast_sim.sim.inventory_path))

    def bundle(*args: str) -> tuple[int, str]:
        result = esxcap(*inv, "bundle", "-t", "SR-1", *args, env=env)
        return result.code, " ".join(result.stderr.split())

    code, stderr = bundle(str(out), "--last", "2", "-o", str(tmp_path / "last.zip"))
    assert code == 0, stderr
    assert bundled(tmp_path / "last.zip") == [s.name for s in segments[-2:]]
    with zipfile.ZipFile(tmp_path / "last.zip") as archive:
        [manifest] = [json.loads(archive.read(n)) for n in archive.namelist() if n.endswith("manifest.json")]
    assert "new" in manifest["hosts"]  # the ring's sidecar describes each segment
    assert all(f["capture"]["ring"]["base"] in f["source"] for f in manifest["files"])

    middle = segments[2]
    moment = tshark_fields(middle, "frame.time_epoch")[3][0]
    base = middle.with_name(middle.name.rsplit("_", 2)[0])
    code, stderr = bundle(str(base), "--around", moment, "-o", str(tmp_path / "around.zip"))
    assert code == 0, stderr
    assert bundled(tmp_path / "around.zip") == [s.name for s in segments[1:4]]

    code, stderr = bundle(str(base), "-o", str(tmp_path / "whole.zip"))  # the base names the whole ring
    assert code == 0, stderr
    assert bundled(tmp_path / "whole.zip") == [s.name for s in segments]

    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(moment)))
    code, stderr = bundle(str(out), "--around", iso, "-o", str(tmp_path / "iso.zip"))
    assert code == 0, stderr
    assert bundled(tmp_path / "iso.zip") == [s.name for s in segments[1:4]]

    code, stderr = bundle(str(out), "--around", "2001-01-01T00:00:00Z", "-o", str(tmp_path / "none.zip"))
    assert code == 2 and "no segment covers 2001-01-01T00:00:00Z" in stderr
    code, stderr = bundle(str(out), "--last", "1", "--around", moment, "-o", str(tmp_path / "none.zip"))
    newest = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(segment_start(segments[-1])))
    assert code == 2 and f"(its last 1 segments run from {newest} to" in stderr and "drop --last" in stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    code, stderr = bundle(str(empty), "--last", "3")
    assert code == 2 and f"no ring segments (<base>_00001_<UTC>.pcapng) at {empty}" in stderr
    code, stderr = bundle(str(out), "--around", "noon")
    assert code == 2 and "--around noon: not a time" in stderr
    assert not (tmp_path / "none.zip").exists()


def test_a_recipe_writes_a_ring_like_capture(fast_sim, env, tmp_path) -> None:
    out = tmp_path / "recipe"
    result = esxcap(
        "-i", str(fast_sim.sim.inventory_path), "recipe", "vm-to-vm", "n1", "m1", "-c", "100",
        "--ring", "files:2,filesize:8k", "-o", f"{out}/", "--json", env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    segments = segments_in(out)
    assert len(segments) == 2 and all(packets(s) > 0 for s in segments)
    streams = result.json()["streams"]
    assert {n for s in segments for i in capinfos(s).interfaces for n in i["Name"]} == {
        s["interface"] for s in streams
    }


def test_duration_segments_span_at_most_their_seconds_from_their_first_packet(tmp_path) -> None:
    ring = Ring(tmp_path / "unit", RingSpec(duration=1.0), [])
    ring.add_interface(Interface("a:b:c", 1, 0))
    stamps = [BASE_NS + 300_000_000 + n * 7_000_000 for n in range(500)]  # 3.5 s, 7 ms apart
    blocks = [encode_epb(0, ts, udp_frame(n)) for n, ts in enumerate(stamps)]
    for start in range(0, 500, 64):
        ring.write_blocks([b"".join(blocks[start : start + 64])], len(blocks[start : start + 64]))
    ring.flush()
    spans = [(s.first_ns, s.last_ns) for s in ring.segments]
    assert len(spans) == 4 and sum(s.packets for s in ring.segments) == 500
    assert all(last is not None and first is not None and last - first < 1e9 for first, last in spans)
    assert [first for first, _ in spans] == [stamps[0] + k * 1_001_000_000 for k in range(4)]


def test_split_rings_need_room_for_every_stream(fast_sim, env, tmp_path) -> None:
    """Room for one ring but not for two: --split (a ring per stream) is refused once the streams are
    known, before any packet is written."""
    out = tmp_path / "split"
    out.mkdir()
    filesize = int(shutil.disk_usage(out).free / 1.1 / 1.5)
    result = esxcap(
        "-i", str(fast_sim.sim.inventory_path), "capture", "--vmk", "vmk0", "--host", "mid", "--host", "new",
        "-c", "10", "--ring", f"files:1,filesize:{filesize}", "--split", "-o", f"{out}/", env=env,
    )  # fmt: skip
    assert result.code == 2, result.stderr
    shown = " ".join(result.stderr.split())
    assert "the ring needs" in shown and "for 2 rings" in shown
    assert not any(out.iterdir())


def test_a_ring_named_like_an_earlier_one_is_refused_and_leaves_it_whole(fast_sim, env, tmp_path) -> None:
    out = tmp_path / "rst"
    out.mkdir()
    ring = ("-c", "40", "--ring", "filesize:4K", "-o", f"{out}/x.pcapng")
    code, stderr = capture(fast_sim, env, *PINGS, *ring)
    assert code == 0, stderr
    first = sorted(p.name for p in out.iterdir())
    before = (out / "x.json").read_bytes()
    assert len(segments_in(out)) > 1

    code, stderr = capture(fast_sim, env, *PINGS, *ring)
    shown = " ".join(stderr.split())
    assert code == 2, stderr
    assert f"{out}/x already has a ring" in shown and "choose another name" in shown
    assert sorted(p.name for p in out.iterdir()) == first  # one ring per base: bundle --last stays right
    assert (out / "x.json").read_bytes() == before

    split = ("-c", "40", "--ring", "filesize:4K", "--split", "-o", f"{out}/y.pcapng")  # rings y-<stream>
    code, stderr = capture(fast_sim, env, *PINGS, *split)
    assert code == 0, stderr
    first = sorted(p.name for p in out.iterdir())
    code, stderr = capture(fast_sim, env, *PINGS, *split)
    assert code == 2 and f"{out}/y already has a ring" in " ".join(stderr.split()), stderr
    assert sorted(p.name for p in out.iterdir()) == first


def test_bundle_last_takes_only_the_rings_own_segments_not_links_or_files_planted_beside(
    fast_sim, env, tmp_path
) -> None:
    out = tmp_path / "shared"
    segments, _ = ring_of_pings(fast_sim, env, out, "-c", "60", "--ring", "filesize:4K")
    assert len(segments) >= 2
    elsewhere = tmp_path / "private.pcapng"
    shutil.copyfile(segments[0], elsewhere)
    base, number, _utc = segments[-1].name.rsplit("_", 2)
    link = out / f"{base}_{int(number) + 1:05d}_20991231T235959Z.pcapng"
    link.symlink_to(elsewhere)  # another user's link, named as the ring's next segment
    planted = out / f"{base}_{int(number) + 2:05d}_20991231T235959Z.pcapng"
    shutil.copyfile(segments[0], planted)
    os.chown(planted, 65534, 65534)  # a file of someone else, named like a segment
    inv = ("-i", str(fast_sim.sim.inventory_path))

    result = esxcap(
        *inv, "bundle", "-t", "SR-1", str(out), "--last", "2", "-o", str(tmp_path / "b.zip"), env=env
    )
    shown = " ".join(result.stderr.split())
    assert result.code == 0, result.stderr
    assert bundled(tmp_path / "b.zip") == [s.name for s in segments[-2:]]
    assert f"skipped {link.name}: a symbolic link, not a segment esxcap wrote" in shown
    assert f"skipped {planted.name}: owned by another user" in shown


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "noon"])
def test_around_refuses_what_is_no_moment(text) -> None:
    with pytest.raises(UsageError, match=f"--around {text}: not a time"):
        parse_time(text)
    assert parse_time("1765070130.5") == 1765070130.5
    assert parse_time("2026-12-07T01:15:30+01:00") == parse_time("2026-12-07 00:15:30")
