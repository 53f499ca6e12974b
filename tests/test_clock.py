"""Clock offsets: the estimate from one clock-script run (a nanosecond reading, or the second edge where
`date` prints `%N` literally), its error bound, the recorded comment, alignment only beyond the bound,
drift with its significance; over SSH, sub-second skews of simulated hosts are found within the stated
bound with and without nanoseconds."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY, MakeSim
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.capture.clock import (
    EDGE_METHOD,
    NANO_METHOD,
    SECONDS_METHOD,
    ClockCheck,
    ClockReading,
    ClockRun,
    annotate,
    clock_comment,
    estimate,
    parse_date,
    significant,
    warnings,
)
from esxcap.pcap.comments import parse_clock_comment

T0 = 1_700_000_000_000_000_000


def test_parse_date_forms() -> None:
    assert parse_date("1700000000.123456789\n") == (T0 + 123_456_789, 0, NANO_METHOD)
    for whole in ("1700000000", "1700000000.%N", "1700000000.N"):
        assert parse_date(whole) == (T0 + 500_000_000, 500_000_000, SECONDS_METHOD)
    assert parse_date("date: invalid option") is None


def host_run(offset: int, up: int, down: int, step: int, nano: bool, sent: int = T0) -> ClockRun:
    """What this machine sees of the clock script on a host `offset` ns ahead: the exec reaches the
    host `up` ns after `sent`, every line takes `down` ns back, each `date +%s` sample takes `step`."""
    at_host = sent + up
    host_ns = at_host + offset
    if nano:
        return ClockRun(sent, ((at_host + down, f"{host_ns // 10**9}.{host_ns % 10**9:09d}"),))
    first = (at_host + down, f"{host_ns // 10**9}.%N")
    seconds, samples, now = host_ns // 10**9, 0, at_host
    while (now + offset) // 10**9 == seconds:
        now += step
        samples += 1
    return ClockRun(sent, (first, (now + down, f"edge {(now + offset) // 10**9} {samples}")))


@settings(max_examples=300, deadline=None)
@given(
    offset=st.integers(-(10**12), 10**12),
    up=st.integers(0, 50_000_000),
    down=st.integers(0, 50_000_000),
    step=st.integers(100_000, 5_000_000),
    nano=st.booleans(),
)
def test_estimate_is_within_its_bound(offset: int, up: int, down: int, step: int, nano: bool) -> None:
    reading = estimate(host_run(offset, up, down, step, nano))
    assert abs(reading.offset_ns - offset) <= reading.bound_ns
    assert reading.method == (NANO_METHOD if nano else EDGE_METHOD)
    assert reading.rtt_ns == up + down


@pytest.mark.parametrize("offset_ms", [370, -640, 2, -999])
def test_sub_second_offsets_without_nanoseconds_are_measured_to_the_sampling_step(offset_ms: int) -> None:
    reading = estimate(host_run(offset_ms * 10**6, 1_000_000, 1_000_000, 2_000_000, nano=False))
    assert reading.method == EDGE_METHOD
    assert abs(reading.offset_ns - offset_ms * 10**6) <= reading.bound_ns <= 4_000_000


def test_whole_seconds_when_the_loop_never_saw_the_edge() -> None:
    run = ClockRun(T0, ((T0 + 2_000_000, "1700000000.%N"), (T0 + 9_000_000, "edge 1700000000 20000")))
    reading = estimate(run)
    assert (reading.method, reading.bound_ns) == (SECONDS_METHOD, 1_000_000 + 500_000_000)
    assert estimate(ClockRun(T0, ((T0 + 2_000_000, "1700000000"),))).method == SECONDS_METHOD


def test_estimate_refuses_no_time() -> None:
    with pytest.raises(ValueError, match="did not print a time"):
        estimate(ClockRun(T0, ((T0 + 10, "sh: date: not found"),)))
    with pytest.raises(ValueError, match="printed nothing"):
        estimate(ClockRun(T0, ()))


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
    assert said[1].startswith("moved: clock offset changed by +4.000 ms") and "±1.000 ms" in said[1]
    assert said[2] == "gone: clock not checked: connection lost"
    assert not any(w.startswith("far") for w in warnings([far], window, aligned=True))
    assert moved.drift_significant and not steady.drift_significant


def test_drift_within_whole_second_bounds_is_no_alarm() -> None:
    coarse = ClockCheck("esx01", reading(120, 500), reading(1010, 500))
    assert coarse.drift_ns == 890_000_000 and not coarse.drift_significant
    assert coarse.as_dict()["drift_bound_ms"] == 1000.0 and coarse.as_dict()["drift_significant"] is False
    assert warnings([coarse], 1_000_000_000, aligned=False) == []
    unsure = ClockCheck("esx02", reading(1300, 500))
    assert warnings([unsure], 1_000_000_000, aligned=False) == []


def test_align_clocks_shifts_only_offsets_beyond_their_bound() -> None:
    assert significant(reading(-640, 3)) and not significant(reading(120, 500))
    runs = {
        host: SimpleNamespace(stream=SimpleNamespace(target=SimpleNamespace(host=host)), notes=(), shift_ns=0)
        for host in ("sure", "unsure")
    }
    checks = {"sure": ClockCheck("sure", reading(-640, 3)), "unsure": ClockCheck("unsure", reading(120, 500))}
    annotate(list(runs.values()), checks, align=True)  # type: ignore[arg-type]
    assert runs["sure"].shift_ns == 640_000_000 and runs["unsure"].shift_ns == 0
    assert parse_clock_comment(runs["sure"].notes[0]) == (-640_000_000, True)
    assert parse_clock_comment(runs["unsure"].notes[0]) == (120_000_000, False)


SKEWS = {"old": (370, False), "mid": (-640, False), "new": (-35, True)}


def test_simulated_hosts_sub_second_offsets_within_bound_with_and_without_nanoseconds(
    make_sim: MakeSim, tmp_path
) -> None:
    data = copy.deepcopy(FAST_TOPOLOGY)
    for host, (skew, nano) in SKEWS.items():
        data["hosts"][host].update(clock_skew_ms=skew, faults={"date_nanoseconds": nano})
    st = make_sim(data)
    result = esxcap(
        "-i", str(st.sim.inventory_path), "capture", "--vm", "a1", "--vm", "m1", "--vm", "n1", "-c", "1",
        "-o", str(tmp_path / "c.pcapng"), "--json", env=isolated_env(tmp_path),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    clocks = {c["host"]: c for c in result.json()["clocks"]}
    assert set(clocks) == set(SKEWS)
    for host, (skew, nano) in SKEWS.items():
        for r in (clocks[host]["start"], clocks[host]["end"]):
            assert r["method"] == (NANO_METHOD if nano else EDGE_METHOD)
            assert abs(r["offset_ms"] - skew) <= r["bound_ms"] + 0.001, (host, r)
            assert r["bound_ms"] < 250, (host, r)  # well under the ±500 ms of whole seconds
