"""`esxcap bundle` and `esxcap verify` end to end on real simulator captures, and the pure pieces:
scoped facts, pseudonyms, splitting."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import esxcap, isolated_env
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import TSHARK, run_tool, tshark_fields
from ticketsim import capture_vm, faulty_topology

from esxcap.pcap import CaptureFile
from esxcap.pcap.anonymize import Anonymizer
from esxcap.sim import SimulatorThread, frames, topology_from_data
from esxcap.ticket.bundle import join_parts, split_file
from esxcap.ticket.bundle_inputs import parse_size


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("bundle")
    env = isolated_env(base)
    with SimulatorThread(topology_from_data(faulty_topology(), "<faulty>"), base / "sim") as running:
        m2 = capture_vm(running, env, "m2", base / "caps" / "m2.pcapng", count=60)
        n1 = capture_vm(running, env, "n1", base / "caps" / "n1.pcapng", count=60)
    yield {"base": base, "env": env, "m2": m2, "n1": n1}


def bundle(work: dict[str, Any], out: Path, *args: str) -> Path:
    result = esxcap("bundle", "--ticket", "SR-42", *args, "-o", str(out), env=work["env"])
    assert result.code == 0, result.stderr
    return out


def members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as z:
        return {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}


def rezip(archive: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            rel = name.split("/", 1)[1]
            data = change.get(rel, src.read(name))
            if data is not None:
                dst.writestr(name, data)
        top = src.namelist()[0].split("/", 1)[0]
        for rel, data in change.items():
            if data is not None and f"{top}/{rel}" not in src.namelist():
                dst.writestr(f"{top}/{rel}", data)
    return out


def verify(work: dict[str, Any], path: Path) -> tuple[int, dict[str, Any]]:
    result = esxcap("verify", str(path), "--json", env=work["env"])
    return result.code, result.json()


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def test_bundle_contents_and_manifest(work: dict[str, Any]) -> None:
    archive = bundle(work, work["base"] / "b1.zip", str(work["m2"]), str(work["n1"]))
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    files = members(archive)
    assert set(files) == {
        "captures/m2.pcapng", "captures/n1.pcapng", "manifest.json", "SHA256SUMS", "README.txt"
    }  # fmt: skip
    sums = dict(reversed(line.split("  ")) for line in files["SHA256SUMS"].decode().splitlines())
    assert set(sums) == {"captures/m2.pcapng", "captures/n1.pcapng", "manifest.json", "README.txt"}
    for name, digest in sums.items():
        assert hashlib.sha256(files[name]).hexdigest() == digest
    manifest = json.loads(files["manifest.json"])
    assert manifest["ticket"] == "SR-42" and manifest["schema"] == "esxcap-bundle/1"
    assert manifest["tool"]["name"] == "esxcap" and manifest["operator"]
    assert manifest["options"] == {"snaplen": None, "anonymized": False, "full_host": False}
    assert manifest["summary"]["packets"] == 120 and manifest["summary"]["hosts"] == ["mid", "new"]
    by_path = {f["path"]: f for f in manifest["files"]}
    for name in ("captures/m2.pcapng", "captures/n1.pcapng"):
        entry = by_path[name]
        assert entry["sha256"] == sums[name] and entry["size"] == len(files[name]) and entry["packets"] == 60
        capture = entry["capture"]
        assert capture["remote_commands"] and capture["streams"] and capture["started_utc"]
        assert capture["targets"][0]["vm"] == name.split("/")[1].split(".")[0]
    assert manifest["hosts"]["mid"]["esxi"]["build"] == "8169922"
    assert manifest["hosts"]["new"]["facts"]["vms"][0]["name"] == "n1"
    assert manifest["analysis"]["packets"] == 120
    assert manifest["analysis"]["tcp"]["retransmissions"] > 0
    readme = files["README.txt"].decode()
    assert "SR-42" in readme and "120 packets in 2 file(s)" in readme and "VM m2 eth0" in readme
    assert "retransmissions" in readme
    code, report = verify(work, archive)
    assert code == 0 and report["ok"] and report["problems"] == []


def test_scoped_facts_name_no_other_vm(work: dict[str, Any]) -> None:
    scoped = json.loads(members(bundle(work, work["base"] / "s.zip", str(work["m2"])))["manifest.json"])
    texts = list(strings(scoped))
    assert not [t for t in texts if t == "m1" or t.startswith(("m1.", "VM m1 "))]
    assert {v["name"] for v in scoped["hosts"]["mid"]["facts"]["vms"]} == {"m2"}
    full = json.loads(
        members(bundle(work, work["base"] / "f.zip", "--full-host", str(work["m2"])))["manifest.json"]
    )
    assert {v["name"] for v in full["hosts"]["mid"]["facts"]["vms"]} == {"m1", "m2"}


def test_verify_names_flipped_bytes_and_missing_files(work: dict[str, Any]) -> None:
    base = work["base"]
    archive = bundle(work, base / "v.zip", str(work["m2"]))
    files = members(archive)
    flipped = bytearray(files["captures/m2.pcapng"])
    flipped[len(flipped) // 2] ^= 0x01
    code, report = verify(work, rezip(archive, base / "v-flip.zip", {"captures/m2.pcapng": bytes(flipped)}))
    assert code == 1 and not report["ok"]
    assert report["problems"] == ["altered: captures/m2.pcapng (SHA-256 differs from SHA256SUMS)"]
    code, report = verify(work, rezip(archive, base / "v-miss.zip", {"README.txt": None}))
    assert code == 1 and report["problems"] == ["missing: README.txt"]
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"captures/m2.pcapng") + 200] ^= 0xFF
    (base / "v-raw.zip").write_bytes(raw)
    code, report = verify(work, base / "v-raw.zip")
    assert code == 1 and any(p.startswith("altered: captures/m2.pcapng") for p in report["problems"])
    code, report = verify(work, rezip(archive, base / "v-extra.zip", {"extra.txt": b"x"}))
    assert code == 1 and report["problems"] == ["not listed in SHA256SUMS: extra.txt"]


def test_tar_gz_and_snaplen(work: dict[str, Any]) -> None:
    archive = bundle(
        work, work["base"] / "t.tar.gz", "--format", "tar.gz", "--snaplen", "64", str(work["m2"])
    )
    code, report = verify(work, archive)
    assert code == 0, report
    out = work["base"] / "t-x"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    [pcap] = out.glob("*/captures/m2.pcapng")
    with pcap.open("rb") as handle:
        records = list(CaptureFile(handle, "m2"))
    assert len(records) == 60 and max(r.caplen for r in records) == 64
    assert max(r.origlen for r in records) > 64
    with work["m2"].open("rb") as handle:
        original = list(CaptureFile(handle, "m2"))
    assert [bytes(r.data) for r in records] == [bytes(r.data[:64]) for r in original]


def _ips(path: Path) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in tshark_fields(path, "ip.src", "ip.dst") if row[0]]


@pytest.mark.skipif(not TSHARK, reason="needs tshark")
def test_anonymized_bundle_is_consistent_and_keeps_the_mapping_outside(work: dict[str, Any]) -> None:
    base = work["base"]
    archive = bundle(work, base / "a.zip", "--anonymize", str(work["m2"]), str(work["n1"]))
    mapping_file = base / "a.zip.mapping.json"
    assert stat.S_IMODE(mapping_file.stat().st_mode) == 0o600
    mapping = json.loads(mapping_file.read_text())
    files = members(archive)
    assert not any("mapping" in name for name in files)
    out = base / "a-x"
    out.mkdir()
    pseudo = {}
    for name in ("m2", "n1"):
        (out / f"{name}.pcapng").write_bytes(files[f"captures/{name}.pcapng"])
        original, anonymized = _ips(work[name]), _ips(out / f"{name}.pcapng")
        assert len(original) == len(anonymized) > 0
        for (src, dst), (asrc, adst) in zip(original, anonymized, strict=True):
            assert mapping["ipv4"][src] == asrc and mapping["ipv4"][dst] == adst
            for orig, new in ((src, asrc), (dst, adst)):
                assert pseudo.setdefault(orig, new) == new  # same pseudonym in both files
        bad = run_tool(
            TSHARK, "-r", str(out / f"{name}.pcapng"), "-o", "ip.check_checksum:TRUE",
            "-o", "tcp.check_checksum:TRUE", "-Y", "ip.checksum.status == 0 || tcp.checksum.status == 0",
        )  # fmt: skip
        assert bad == ""
    everything = b"".join(files.values())
    for address in mapping["ipv4"]:
        assert address.encode() not in everything
        assert ipaddress.IPv4Address(address).packed not in files["captures/m2.pcapng"]
    for mac in mapping["mac"]:
        assert mac.encode() not in everything and bytes.fromhex(mac.replace(":", "")) not in everything
    assert "10.0.20.12" in mapping["ipv4"] and "00:50:56:9a:20:02" in mapping["mac"]


def test_split_parts_reassemble_and_verify(work: dict[str, Any]) -> None:
    base = work["base"] / "split"
    base.mkdir()
    result = esxcap(
        "bundle", "--ticket", "SR-42", "--split-size", "4k", str(work["m2"]), str(work["n1"]),
        "-o", str(base / "p.zip"), env=work["env"],
    )  # fmt: skip
    assert result.code == 0, result.stderr
    parts = sorted(base.glob("p.zip.0*"))
    assert len(parts) >= 2 and not (base / "p.zip").exists()
    assert all(p.stat().st_size <= 4096 for p in parts)
    joined = b"".join(p.read_bytes() for p in parts)
    assert hashlib.sha256(joined).hexdigest() in result.stdout
    listing = subprocess.run(
        ["sha256sum", "-c", "--strict", "p.zip.parts.sha256"], check=False, cwd=base, capture_output=True
    )
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert listing.stdout.count(b": OK") == len(parts)
    code, report = verify(work, parts[0])
    assert code == 0, report
    parts[-1].unlink()
    code, report = verify(work, base / "p.zip")
    assert code == 1 and f"missing part: {parts[-1].name}" in report["problems"]


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=0, max_size=5000), size=st.integers(min_value=1024, max_value=3000))
def test_split_file_reassembles_byte_exactly(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, size: int
) -> None:
    path = tmp_path_factory.mktemp("split") / "a.zip"
    path.write_bytes(data)
    parts = split_file(path, size)
    assert all(len(p.read_bytes()) <= size for p in parts)
    joined = path.with_name("joined")
    with joined.open("wb") as out:
        join_parts(parts, out)
    assert joined.read_bytes() == data


def test_parse_size() -> None:
    assert parse_size("10M") == 10 * 1024 * 1024
    assert parse_size("1.5k") == 1536 and parse_size("2048") == 2048 and parse_size("1GiB") == 1 << 30
    with pytest.raises(Exception, match="not a size"):
        parse_size("ten")


def test_anonymizer_keeps_checksums_and_special_addresses() -> None:
    anon = Anonymizer()
    payload = frames.tcp("10.1.1.1", "10.2.2.2", 1234, 80, 7, 9, frames.TCP_ACK, b"hello")
    frame = frames.ipv4("00:50:56:01:02:03", "ff:ff:ff:ff:ff:ff", "10.1.1.1", "10.2.2.2", 6, payload, 1)
    new = anon.frame(frame)
    assert new[:6] == b"\xff" * 6 and new[6:9] == b"\x02\x00\x00"
    src, dst = new[26:30], new[30:34]
    assert frames.checksum(new[14:34]) == 0
    end = 14 + struct.unpack_from("!H", new, 16)[0]  # the frame is padded to 60 bytes
    pseudo = src + dst + struct.pack("!BBH", 0, 6, end - 34)
    assert frames.checksum(pseudo + new[34:end]) == 0
    assert anon.frame(frame) == new  # the same pseudonyms the second time
    text = anon.text("VM a 00:50:56:01:02:03 10.1.1.1/255.255.255.0 and 10.2.2.2 build 6.7.0")
    assert text == "VM a 02:00:00:00:00:01 198.18.0.1/255.255.255.0 and 198.18.0.2 build 6.7.0"
    assert anon.mapping()["ipv4"] == {"10.1.1.1": "198.18.0.1", "10.2.2.2": "198.18.0.2"}
    arp = frames.arp("00:50:56:01:02:03", "10.1.1.1", "00:50:56:0a:0b:0c", "10.3.3.3", reply=True)
    out = anon.frame(arp)
    assert out[22:28] == bytes.fromhex("020000000001") and out[28:32] == bytes([198, 18, 0, 1])


def test_bundle_takes_folders_default_captures_skipping_sidecars_and_parts(work: dict[str, Any]) -> None:
    base = work["base"] / "folders"
    folder = base / "captures"
    folder.mkdir(parents=True)
    for capture in (work["m2"], work["n1"]):
        shutil.copy(capture, folder)
        shutil.copy(capture.with_name(capture.name + ".json"), folder)
    part = folder / "x.pcapng.a1b2.part"
    part.write_bytes(work["m2"].read_bytes()[:-20])
    by_default = esxcap("bundle", "--ticket", "SR-42", "-o", "d.zip", env=work["env"], cwd=base)
    assert by_default.code == 0, by_default.stderr
    assert {n for n in members(base / "d.zip") if n.startswith("captures/")} == {
        "captures/m2.pcapng",
        "captures/n1.pcapng",
    }
    assert "skipped 3 files that are not captures" in " ".join(by_default.stderr.split())
    assert "bundle: packing 2 capture files" in by_default.stderr  # said before the long part starts
    twice = esxcap(
        "bundle", "--ticket", "SR-42", "captures", str(folder / "m2.pcapng"), str(part), "-o", "t.zip",
        env=work["env"], cwd=base,
    )  # fmt: skip
    shown = " ".join(twice.stderr.split())
    assert twice.code == 0 and "is the same file as" in shown and "still being written or cut short" in shown


def test_bundle_format_follows_the_name_and_a_mismatch_is_refused(work: dict[str, Any]) -> None:
    base = work["base"] / "formats"
    base.mkdir()
    archive = bundle(work, base / "named.tar.gz", str(work["m2"]))
    assert tarfile.is_tarfile(archive) and not zipfile.is_zipfile(archive)
    mismatch = esxcap(
        "bundle", "--ticket", "SR-42", str(work["m2"]), "--format", "tar.gz", "-o", str(base / "x.zip"),
        env=work["env"],
    )  # fmt: skip
    assert mismatch.code == 2 and "named as a zip archive but --format is tar.gz" in mismatch.stderr
    assert not (base / "x.zip").exists()
    again = esxcap("bundle", "--ticket", "SR-42", str(work["m2"]), "-o", str(archive), env=work["env"])
    assert again.code == 2 and "already exists" in again.stderr and "--force" in again.stderr


def test_bundle_staging_never_goes_through_a_planted_folder_link(work: dict[str, Any]) -> None:
    base = work["base"] / "staging"
    victim = base / "victim"
    victim.mkdir(parents=True)
    victim.chmod(0o755)
    (victim / "keep.txt").write_text("mine")
    (base / "s.zip.files").symlink_to(victim)
    bundle(work, base / "s.zip", str(work["m2"]))
    assert (victim / "keep.txt").read_text() == "mine" and sorted(os.listdir(victim)) == ["keep.txt"]
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert sorted(p.name for p in base.iterdir()) == ["s.zip", "s.zip.files", "victim"]


def retar(archive: Path, out: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """`archive` (a tar.gz bundle) with `extra` members appended."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for info in src:
            dst.addfile(info, src.extractfile(info))
        top = src.getnames()[0].split("/", 1)[0]
        for info, data in extra:
            info.name = info.name.replace("TOP", top)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def tar_member(
    name: str, kind: bytes, data: bytes | None = None, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data or b"")
    return info, data


def test_verify_refuses_links_devices_climbing_names_and_duplicates(work: dict[str, Any]) -> None:
    base = work["base"] / "unsafe"
    base.mkdir()
    good = bundle(work, base / "g.tar.gz", str(work["m2"]))
    cases = {
        "a symbolic link": tar_member("TOP/captures/evil", tarfile.SYMTYPE, link="/etc/passwd"),
        "a hard link": tar_member("TOP/captures/hard", tarfile.LNKTYPE, link="/etc/shadow"),
        "a FIFO": tar_member("TOP/captures/fifo", tarfile.FIFOTYPE),
        "a character device": tar_member("TOP/captures/null", tarfile.CHRTYPE),
        "climbs out of the archive": tar_member("TOP/../../outside.txt", tarfile.REGTYPE, b"x"),
        "is in the archive twice": tar_member(
            "TOP/README.txt", tarfile.REGTYPE, members_tar(good)["README.txt"]
        ),
    }
    for n, (why, member) in enumerate(cases.items()):
        code, report = verify(work, retar(good, base / f"bad{n}.tar.gz", [member]))
        assert code == 1 and any(why in p for p in report["problems"]), (why, report)
    zipped = bundle(work, base / "z.zip", str(work["m2"]))
    files = members(zipped)
    shadowed = base / "shadow.zip"
    with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(shadowed, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        top = src.namelist()[0].split("/", 1)[0]
        dst.writestr(f"{top}/./captures/m2.pcapng", files["captures/m2.pcapng"])
    code, report = verify(work, shadowed)
    assert code == 1 and any("are the same path" in p for p in report["problems"]), report


def members_tar(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_verify_refuses_overlapping_zip_entries_unread_and_crafted_part_names(work: dict[str, Any]) -> None:
    base = work["base"] / "bomb"
    base.mkdir()
    bomb = base / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("b/kernel", bytes(8 << 20))
        z.writestr("b/other", b"tiny")
    raw = bytearray(bomb.read_bytes())
    second = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 4)
    struct.pack_into("<I", raw, second + 42, 0)  # the second entry points at the first one's data
    bomb.write_bytes(bytes(raw))
    code, report = verify(work, bomb)
    assert code == 1 and any("overlap" in p for p in report["problems"]), report
    assert report["checked"] == []
    parts = base / "parts"
    parts.mkdir()
    result = esxcap(
        "bundle", "--ticket", "SR-42", "--split-size", "4k", str(work["m2"]), "-o", str(parts / "p.zip"),
        env=work["env"],
    )  # fmt: skip
    assert result.code == 0, result.stderr
    listing = parts / "p.zip.parts.sha256"
    listing.write_text(listing.read_text() + f"{'0' * 64}  ../../etc/passwd\n{'0' * 64}  sub/p.zip.001\n")
    code, report = verify(work, parts / "p.zip.001")
    assert code == 1
    assert "not a part of p.zip in p.zip.parts.sha256: ../../etc/passwd" in report["problems"]
    assert "not a part of p.zip in p.zip.parts.sha256: sub/p.zip.001" in report["problems"]


def test_a_default_bundle_is_not_taken_for_a_stranger_by_the_next_one(work: dict[str, Any]) -> None:
    """Without -o the archive goes beside the captures, into ./captures: the next bundle of that folder
    passes over it (and its parts and mapping) without a word, and still names other strangers."""
    base = work["base"] / "again"
    folder = base / "captures"
    folder.mkdir(parents=True)
    shutil.copy(work["m2"], folder)
    first = esxcap("bundle", "--ticket", "SR-7", "--anonymize", env=work["env"], cwd=base)
    assert first.code == 0, first.stderr
    assert [p.suffix for p in folder.glob("SR-7-*.zip")] == [".zip"] and list(folder.glob("*.mapping.json"))
    (folder / "notes.txt").write_text("a stranger\n")
    second = esxcap("bundle", "--ticket", "SR-7", "-o", "next.zip", env=work["env"], cwd=base)
    shown = " ".join(second.stderr.split())
    assert second.code == 0 and "skipped 1 files that are not captures (notes.txt)" in shown, shown
    assert {n for n in members(base / "next.zip") if n.startswith("captures/")} == {"captures/m2.pcapng"}
