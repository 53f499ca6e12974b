"""The benchmark's helpers (pcap generator, private sshd, table) and the capture hot-path shortcuts they
measure (batched pcapng writes, the reorder window's in-order FIFO) give the same results as before."""

from __future__ import annotations

import asyncio
import io
import itertools
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.pcap import (
    EPB_INBOUND,
    EPB_OUTBOUND,
    Interface,
    PcapngStreamReader,
    PcapngWriter,
    PcapStreamReader,
    Record,
)

# bench/ sits at the repository root, beside esxcap/, and is not installed: `python -m bench` runs from there
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import Row, format_table, pcapgen
from bench.sshd import OpenSshd, SshdUnavailable
from bench.throughput import ChildConfig, Measurement, _stream_with_esxcap


@pytest.mark.parametrize(("total", "frame"), [(24, 1514), (40, 1514), (100_000, 1514), (3 << 20, 60)])
def test_pcapgen_stream_parses_and_matches_its_layout(total: int, frame: int) -> None:
    data = b"".join(pcapgen.blocks(total, frame))
    reader = PcapStreamReader()
    records = [r for i in range(0, len(data), 65536) for r in reader.feed(data[i : i + 65536])]
    assert reader.finish() == 0
    assert len(data) == total
    assert (len(records), sum(len(r.data) for r in records)) == pcapgen.layout(total, frame)
    assert all(a.ts_ns < b.ts_ns for a, b in itertools.pairwise(records))
    assert reader.header is not None and reader.header.nanos


def test_pcapgen_runs_as_a_standalone_script(tmp_path: Path) -> None:
    script = tmp_path / "gen.py"
    script.write_bytes(Path(pcapgen.__file__).read_bytes())
    out = subprocess.run([sys.executable, str(script), "--bytes", "5000"], capture_output=True, check=True)
    assert out.stdout[:24] == pcapgen.global_header()
    assert len(out.stdout) == 5000 and len(PcapStreamReader().feed(out.stdout)) == pcapgen.layout(5000)[0]
    counted = subprocess.run(
        [sys.executable, str(script), "--bytes", "50000", "-c", "3"], capture_output=True, check=True
    )
    assert len(PcapStreamReader().feed(counted.stdout)) == 3 and len(counted.stdout) == 24 + 3 * (16 + 1514)


def _records() -> st.SearchStrategy[list[tuple[int, Record]]]:
    record = st.builds(
        Record,
        st.integers(0, 2**63),
        st.integers(0, 70_000),
        st.binary(max_size=70),
        st.just(0),
        st.lists(st.text(max_size=8), max_size=1).map(tuple),
        st.sampled_from([0, EPB_INBOUND, EPB_OUTBOUND]),
    )
    return st.lists(st.tuples(st.integers(0, 1), record), max_size=200)


@settings(max_examples=100, deadline=None)
@given(_records())
def test_write_records_writes_the_bytes_write_record_writes(items: list[tuple[int, Record]]) -> None:
    outputs = []
    for batched in (False, True):
        buf = io.BytesIO()
        writer = PcapngWriter(buf)
        for name in ("a", "b"):
            writer.add_interface(Interface(name))
        if batched:
            writer.write_records(items)
        else:
            for iface, record in items:
                writer.write_record(record, iface)
        outputs.append((buf.getvalue(), writer.packets))
    assert outputs[0] == outputs[1]
    read = PcapngStreamReader().feed(outputs[1][0])
    assert [(r.interface, r.ts_ns, bytes(r.data), r.flags) for r in read] == [
        (i, r.ts_ns, bytes(r.data), r.flags) for i, r in items
    ]


def test_table_pads_columns_and_ratio_rows_check_their_target() -> None:
    rows = [
        Row.ratio("throughput", "same cipher", 0.85, 0.8),
        Row.ratio("throughput", "defaults", 0.7, 1.0),
        Row.ratio("throughput", "other", None, 1.0, "a case failed"),
        Row.skipped("throughput", "simulator", "no bulk flow"),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["benchmark", "case", "result", "target", "verdict"]
    assert [r.verdict for r in rows] == ["PASS", "MISS", "MISS", ""]
    assert lines[2].index("0.85") == lines[3].index("0.70") == lines[0].index("result")
    assert "not measured: no bulk flow" in lines[5]


def test_measurement_figures() -> None:
    m = Measurement(nbytes=1 << 30, seconds=2.0, cpu_seconds=3.0, peak_rss_kib=2048, cipher="aes128-gcm")
    assert (round(m.mb_s, 1), m.cpu_per_gib) == (536.9, 3.0)
    assert "2.0 MiB peak RSS" in m.describe()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> OpenSshd:
    try:
        server = OpenSshd.start(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as exc:
        pytest.fail(f"OpenSSH sshd is needed for the benchmark helpers: {exc}")
    yield server  # type: ignore[misc]
    server.stop()


def test_private_sshd_runs_a_command_over_openssh(sshd: OpenSshd) -> None:
    argv = [*sshd.ssh_argv("aes128-gcm@openssh.com"), "echo ok"]
    out = subprocess.run(argv, capture_output=True, timeout=20, check=False)
    assert (out.returncode, out.stdout) == (0, b"ok\n"), out.stderr


def test_esxcap_streams_pcapgen_from_openssh_sshd(sshd: OpenSshd, tmp_path: Path) -> None:
    gen = tmp_path / "pcapgen.py"
    gen.write_bytes(Path(pcapgen.__file__).read_bytes())
    nbytes = 3 << 20
    argv = [sys.executable, str(gen), "--bytes", str(nbytes), "-c", str(pcapgen.layout(nbytes)[0])]
    out = tmp_path / "out.pcapng"
    keys = str(sshd.known_hosts), str(sshd.client_key)
    cfg = ChildConfig(sshd.port, sshd.user, *keys, argv, nbytes, str(out))
    result = asyncio.run(_stream_with_esxcap(cfg))
    assert result.error == "", shlex.join(argv)
    assert result.cipher == "aes128-gcm@openssh.com"
    assert len(result.rss_kib) == 4 and all(result.rss_kib)
    written = PcapngStreamReader().feed(out.read_bytes())
    assert (len(written), sum(len(r.data) for r in written)) == pcapgen.layout(nbytes)
