"""Clock offsets: the estimate from bracketed `date` probes, its error bound, the recorded comment, and
the warnings; over SSH, the simulator's skewed `date` is found within the stated bound."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import ssh
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.capture.clock import (
    NANO_METHOD,
    SECONDS_METHOD,
    ClockCheck,
    ClockReading,
    Probe,
    check,
    clock_comment,
    estimate,
    parse_date,
    warnings,
)
from esxcap.pcap.comments import parse_clock_comment
from esxcap.ssh.transport import CommandResult

T0 = 1_700_000_000_000_000_000


def test_parse_date_forms() -> None:
    assert parse_date("1700000000.123456789\n") == (T0 + 123_456_789, 0, NANO_METHOD)
    for whole in ("1700000000", "1700000000.%N", "1700000000.N"):
        assert parse_date(whole) == (T0 + 500_000_000, 500_000_000, SECONDS_METHOD)
    assert parse_date("date: invalid option") is None


@settings(max_examples=150, deadline=None)
@given(
    offset=st.integers(-(10**12), 10**12),
    rtts=st.lists(st.tuples(st.integers(1, 50_000_000), st.floats(0, 1)), min_size=1, max_size=6),
)
def test_estimate_is_within_its_bound(offset: int, rtts: list[tuple[int, float]]) -> None:
    probes, sent = [], T0
    for rtt, where in rtts:
        host = sent + round(rtt * where) + offset
        probes.append(Probe(sent, sent + rtt, f"{host // 10**9}.{host % 10**9:09d}"))
        sent += rtt + 1000
    reading = estimate(probes)
    assert reading.rtt_ns == min(r for r, _ in rtts)
    assert abs(reading.offset_ns - offset) <= reading.bound_ns


def test_estimate_refuses_no_time() -> None:
    with pytest.raises(ValueError, match="did not print a time"):
        estimate([Probe(T0, T0 + 10, "sh: date: not found")])


def reading(offset_ms: float, bound_ms: float = 0.5) -> ClockReading:
    return ClockReading(
        round(offset_ms * 1e6), round(bound_ms * 1e6), round(2 * bound_ms * 1e6), NANO_METHOD, 5
    )


def test_comment_round_trip() -> None:
    text = clock_comment("esx01", reading(120.25), aligned=False)
    assert parse_clock_comment(text) == (120_250_000, False)
    assert parse_clock_comment(clock_comment("esx01", reading(-3.5), aligned=True)) == (-3_500_000, True)
    assert parse_clock_comment("remote command: pktcap-uw ...") is None


def test_warnings() -> None:
    window = 1_000_000_000
    far = ClockCheck("far", reading(1500), reading(1500))
    moved = ClockCheck("moved", reading(10), reading(14))
    steady = ClockCheck("steady", reading(10), reading(10.3))
    failed = ClockCheck("gone", None, None, "connection lost")
    said = warnings([far, moved, steady, failed], window, aligned=False)
    assert len(said) == 3
    assert "far: clock off by +1500.0 ms at start" in said[0] and "--align-clocks" in said[0]
    assert said[1].startswith("moved: clock offset changed by +4.000 ms")
    assert said[2] == "gone: clock not checked: connection lost"
    assert not any(w.startswith("far") for w in warnings([far], window, aligned=True))
    assert moved.drift_significant and not steady.drift_significant


class Exec:
    """`run` over a real SSH connection to the simulator (what measure needs of a Connection)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def run(self, argv: Sequence[str], *, timeout: float, stdin: bytes = b"") -> CommandResult:
        done = await asyncio.wait_for(self.conn.run(shlex.join(argv), encoding=None), timeout)
        return CommandResult(done.exit_status, done.stdout, done.stderr)


def test_simulated_hosts_offsets_within_bound(fast_sim) -> None:
    async def measure(host: str) -> ClockCheck:
        async with ssh(fast_sim, host) as conn:
            first = await check(Exec(conn), host)  # type: ignore[arg-type]
            return await check(Exec(conn), host, first)  # type: ignore[arg-type]

    for host, skew_ms in (("old", 120), ("mid", -35), ("new", 0)):
        result = asyncio.run(measure(host))
        assert result.start is not None and result.end is not None and result.error is None
        for r in (result.start, result.end):
            assert r.method == NANO_METHOD and r.probes == 5
            assert abs(r.offset_ns - skew_ms * 1_000_000) <= r.bound_ns
