"""Trigger conditions on encoded blocks (esxcap.pcap.triggers) and the before-window's memory bound and
spill file (esxcap.capture.before), without SSH: frames from the simulator's frame builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from esxcap.capture.before import BeforeBuffer
from esxcap.capture.triggered import event_name
from esxcap.errors import UsageError
from esxcap.pcap import encode_epb
from esxcap.pcap.triggers import Condition, TriggerScanner, parse_trigger
from esxcap.sim import frames

A, B = ("00:50:56:00:00:0a", "10.0.0.1"), ("00:50:56:00:00:0b", "10.0.0.2")
S = 1_000_000_000


def tcp(flags: int, forward: bool = True, ident: int = 7, vlan: int | None = None) -> bytes:
    (smac, sip), (dmac, dip) = (A, B) if forward else (B, A)
    sport, dport = (50000, 80) if forward else (80, 50000)
    segment = frames.tcp(sip, dip, sport, dport, 1, 0, flags, b"")
    frame = frames.ipv4(smac, dmac, sip, dip, frames.PROTO_TCP, segment, ident)
    return frames.tag_vlan(frame, vlan) if vlan is not None else frame


def blocks(iface: int, packets: list[tuple[int, bytes]]) -> tuple[list[int], list[bytes]]:
    return [ts for ts, _ in packets], [encode_epb(iface, ts, frame) for ts, frame in packets]


def scanner(expr: str, streams: int = 1, drop: int | None = None) -> TriggerScanner:
    scan = TriggerScanner(parse_trigger(expr))
    for iface in range(streams):
        scan.add_stream(iface, 0, iface == drop)
    return scan


def test_expressions_parse_into_conditions() -> None:
    assert parse_trigger("tcp-rst") == Condition("tcp-rst", "tcp-rst")
    assert parse_trigger("tcp-syn-noreply").seconds == 3.0
    assert parse_trigger("tcp-syn-noreply:0.5").late_ns == S // 2
    assert parse_trigger("gap:5").seconds == 5.0
    bytes_ = parse_trigger("bytes:0x0806@12")
    assert (bytes_.pattern, bytes_.offset) == (b"\x08\x06", 12)
    counted = parse_trigger("count:3:icmp-unreach")
    assert (counted.kind, counted.count, counted.text) == ("icmp-unreach", 3, "count:3:icmp-unreach")
    assert parse_trigger("df:tcp.port == 443 and ip.addr==10.0.0.1").display_filter == (
        "tcp.port == 443 and ip.addr==10.0.0.1"
    )


@pytest.mark.parametrize(
    ("expr", "part"),
    [("rst", "'rst'"), ("gap:0", "'0'"), ("gap:inf", "'inf'"), ("bytes:@1", "''"), ("bytes:08@x", "'x'"),
     ("count:0:drop", "'0'"), ("count:2", "needs a condition"), ("drop:1", "'1'")],
)  # fmt: skip
def test_bad_expressions_name_their_bad_part(expr: str, part: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_trigger(expr)
    assert part in caught.value.message and expr in caught.value.message
    assert "tcp-rst" in (caught.value.hint or "")


def test_tcp_rst_fires_on_plain_and_vlan_tagged_frames_only() -> None:
    scan = scanner("tcp-rst")
    packets = [
        (1 * S, tcp(frames.TCP_ACK)),
        (2 * S, tcp(frames.TCP_RST, vlan=20)),
        (3 * S, tcp(frames.TCP_RST)),
    ]
    hits = scan.scan(0, *blocks(0, packets))
    assert [h.ts_ns for h in hits] == [2 * S, 3 * S]
    assert all(h.what == "TCP RST" for h in hits)


def test_syn_noreply_fires_only_for_the_syn_nobody_answered_once_its_time_passed() -> None:
    scan = scanner("tcp-syn-noreply:1", streams=2)
    answered = tcp(frames.TCP_SYN)
    reply = tcp(frames.TCP_SYN | frames.TCP_ACK, forward=False)
    lonely = frames.ipv4(A[0], B[0], A[1], B[1], frames.PROTO_TCP,
                         frames.tcp(A[1], B[1], 50001, 80, 1, 0, frames.TCP_SYN, b""), 9)  # fmt: skip
    assert scan.scan(0, *blocks(0, [(1 * S, answered), (1 * S + 10, lonely)])) == []
    assert scan.scan(1, *blocks(1, [(1 * S + 500, reply)])) == []
    assert scan.scan(1, *blocks(1, [(S + S // 2, tcp(frames.TCP_ACK, forward=False))])) == []
    [hit] = scan.scan(1, *blocks(1, [(2 * S + 20, tcp(frames.TCP_ACK, forward=False))]))
    assert (hit.iface, hit.ts_ns) == (0, 1 * S + 10)


def test_icmp_unreachable_and_bytes_at_an_offset() -> None:
    quoted = frames.ipv4(A[0], B[0], A[1], B[1], frames.PROTO_UDP, frames.udp(A[1], B[1], 1, 2, b""), 1)
    unreach = frames.ipv4(
        B[0], A[0], B[1], A[1], frames.PROTO_ICMP, frames.icmp_unreachable(quoted[14:42]), 2
    )
    echo = frames.ipv4(B[0], A[0], B[1], A[1], frames.PROTO_ICMP, frames.icmp_echo(1, 1, True), 3)
    [hit] = scanner("icmp-unreach").scan(0, *blocks(0, [(S, echo), (2 * S, unreach)]))
    assert hit.ts_ns == 2 * S and "code 3" in hit.what
    arp = frames.arp(A[0], A[1], B[0], B[1], reply=False)
    [hit] = scanner("bytes:0806@12").scan(0, *blocks(0, [(S, echo), (2 * S, arp)]))
    assert hit.ts_ns == 2 * S
    assert scanner("bytes:0806@9999").scan(0, *blocks(0, [(S, arp)])) == []


def test_drop_fires_on_drop_point_streams_only() -> None:
    scan = scanner("drop", streams=2, drop=1)
    assert scan.scan(0, *blocks(0, [(S, tcp(frames.TCP_ACK))])) == []
    [hit] = scan.scan(1, *blocks(1, [(2 * S, tcp(frames.TCP_ACK)), (3 * S, tcp(frames.TCP_ACK))]))
    assert (hit.iface, hit.ts_ns) == (1, 2 * S)


def test_gap_is_seen_when_a_stream_resumes_and_through_the_other_streams_clock() -> None:
    scan = scanner("gap:2", streams=2)
    ack = tcp(frames.TCP_ACK)
    assert scan.scan(0, *blocks(0, [(1 * S, ack), (2 * S, ack)])) == []
    [resumed] = scan.scan(0, *blocks(0, [(5 * S, ack)]))
    assert (resumed.iface, resumed.ts_ns) == (0, 2 * S) and "silent 3.000 s" in resumed.what
    assert scan.scan(1, *blocks(1, [(6 * S, ack)])) == []
    [silent] = scan.scan(1, *blocks(1, [(7 * S, ack)]))
    assert (silent.iface, silent.ts_ns) == (0, 5 * S)
    assert scan.scan(1, *blocks(1, [(8 * S, ack)])) == []  # the same silence fires once


def test_count_takes_a_packet_seen_at_several_points_once() -> None:
    scan = scanner("count:2:tcp-rst", streams=2)
    first, second = tcp(frames.TCP_RST, ident=1), tcp(frames.TCP_RST, ident=2)
    assert scan.scan(0, *blocks(0, [(1 * S, first)])) == []
    assert scan.scan(1, *blocks(1, [(1 * S + 1000, tcp(frames.TCP_RST, ident=1, vlan=20))])) == []
    [hit] = scan.scan(1, *blocks(1, [(1 * S + 5000, second)]))
    assert hit.ts_ns == 1 * S + 5000 and hit.what == "TCP RST (match 2)"


def _batches(count: int, size: int, per_batch: int) -> list[tuple[int, list[bytes]]]:
    """`count` blocks of `size` bytes (pcapng-shaped: their length at offset 4), `per_batch` to a batch,
    each batch with the time of its last block (block i at time i)."""
    blocks = [(1).to_bytes(4, "little") + size.to_bytes(4, "little") + bytes([i % 256]) * (size - 8)
              for i in range(count)]  # fmt: skip
    return [(min(s + per_batch, count) - 1, blocks[s : s + per_batch]) for s in range(0, count, per_batch)]


def _held(buffer: BeforeBuffer, start: int = 0) -> list[bytes]:
    return [bytes(b) for batch in buffer.since(start) for b in batch]


def test_before_buffer_spills_beyond_its_bound_and_gives_back_every_block_in_order(tmp_path: Path) -> None:
    buffer = BeforeBuffer(max_bytes=4096, spill_dir=tmp_path)
    batches = _batches(200, 100, 10)
    for newest, blocks in batches:
        buffer.add(newest, blocks)
    sent = [b for _, blocks in batches for b in blocks]
    assert buffer.spills > 0 and buffer.memory_bytes <= 4096
    assert buffer.spilled_bytes + buffer.memory_bytes == 200 * 100
    assert _held(buffer) == sent
    assert _held(buffer, 155) == sent[150:]  # whole batches: the one holding 155 starts at 150
    assert list(tmp_path.iterdir()) == []  # the spill file has no name
    buffer.prune(190)
    assert _held(buffer) == sent[190:]
    assert buffer.spilled_bytes == 0
    buffer.close()


def test_before_buffer_spills_thousands_of_blocks_at_once(tmp_path: Path) -> None:
    buffer = BeforeBuffer(max_bytes=1 << 20, spill_dir=tmp_path)
    [(newest, blocks)] = _batches(40_000, 64, 40_000)
    buffer.add(newest, blocks)
    assert buffer.spills == 1 and buffer.spilled_bytes > 0
    assert _held(buffer) == blocks
    buffer.close()


def test_before_buffer_compacts_its_spill_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("esxcap.capture.before.COMPACT_MIN", 1000)
    buffer = BeforeBuffer(max_bytes=1000, spill_dir=tmp_path)
    batches = _batches(100, 100, 1)
    for newest, blocks in batches:
        buffer.add(newest, blocks)
    buffer.prune(60)
    assert _held(buffer) == [b for _, blocks in batches[60:] for b in blocks]
    buffer.close()


def test_event_files_sort_by_number_then_time() -> None:
    base = Path("/x/20260101T000000Z-vm-to-vm-a-b.pcapng")
    names = [event_name(base, n, 1_767_225_600_000_000_000 + n * S).name for n in (1, 2, 10)]
    assert names == sorted(names)
    assert names[0] == "20260101T000000Z-vm-to-vm-a-b_trigger001_20260101T000001.000Z.pcapng"
