"""Fuzz and property tests for what the other suites leave open.

- Parsers on random tables and record blocks (real headers and keys, random layout and cells) and on
  random text, including the listing, `pktcap-uw -A` and `date` parsers: only ParseError may escape.
- Quoting through real shells (/bin/sh and BusyBox sh, ESXi's shell): every argv we send, the complete
  capture wrapper and a batch included, arrives exactly as built, whatever the values hold.
- The pcap-to-pcapng transcoder (the capture hot path) on random, mutated and cut streams: only our
  format errors escape, and the blocks it produced before the error form a file our reader reads whole.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from golden_util import command_output
from hypothesis import given, settings
from hypothesis import strategies as st
from pcaptools import BASE_NS, pcap_stream, udp_frame

from esxcap.capture.clock import parse_date
from esxcap.errors import ParseError, UsageError
from esxcap.esxi.capabilities import Capabilities, parse_available_points
from esxcap.esxi.lifecycle import parse_listing, wrapper_argv
from esxcap.esxi.parsers import (
    parse_dvs_list,
    parse_ip_interface_list,
    parse_ipv4_get,
    parse_net_stats,
    parse_nic_list,
    parse_portgroups,
    parse_standard_switches,
    parse_system_version,
    parse_vm_list,
    parse_vm_port_list,
    parse_vmware_vl,
)
from esxcap.esxi.pktcap import CaptureSpec, FlowFilter, Selector, build_argv
from esxcap.esxi.remote import Batch, command_line
from esxcap.esxi.textfmt import Column, parse_records, parse_table, render_records, render_table
from esxcap.esxi.textfmt import Record as Block
from esxcap.pcap import (
    CaptureFile,
    CaptureFormatError,
    Interface,
    PcapngTranscoder,
    PcapngWriter,
    PcapStreamReader,
    Record,
)
from esxcap.pcap.comments import parse_clock_comment

SETTINGS = settings(max_examples=150, deadline=None)
Parse = Callable[[str], Any]

TABLES: list[tuple[Parse, str]] = [
    (parse_vm_list, "esxcli_network_vm_list_esxi67.txt"),
    (parse_nic_list, "esxcli_network_nic_list_esxi8x.txt"),
    (parse_ipv4_get, "esxcli_network_ip_interface_ipv4_get_esxi8x.txt"),
    (parse_portgroups, "esxcli_network_vswitch_standard_portgroup_list_esxi8x.txt"),
]
RECORDS: list[tuple[Parse, str, bool]] = [
    (parse_vm_port_list, "esxcli_network_vm_port_list_esxi703_two_vnics.txt", False),
    (parse_ip_interface_list, "esxcli_network_ip_interface_list_esxi67plus.txt", True),
    (parse_standard_switches, "esxcli_network_vswitch_standard_list_esxi67_two.txt", True),
    (parse_dvs_list, "esxcli_network_vswitch_dvs_vmware_list_esxi900.txt", True),
]
TEXT_PARSERS: list[Parse] = [
    parse_vm_list,
    parse_nic_list,
    parse_ipv4_get,
    parse_portgroups,
    parse_vm_port_list,
    parse_ip_interface_list,
    parse_standard_switches,
    parse_dvs_list,
    parse_system_version,
    parse_vmware_vl,
    parse_net_stats,
    parse_listing,
    parse_available_points,
]

cell_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r")
cells = st.one_of(
    st.text(cell_chars, max_size=12),
    st.sampled_from(["", "0", "-1", "4294967296", "true", "false", "N/A", "00:50:56:8a:10:01", "1.2.3.4"]),
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
)


@functools.cache
def _table_headers(fixture: str) -> list[str]:
    return list(parse_table(command_output(fixture), fixture).headers)


@functools.cache
def _record_keys(fixture: str, titled: bool) -> list[str]:
    blocks = parse_records(command_output(fixture), fixture, titled)
    return list(dict.fromkeys(key for block in blocks for key, _value in block.fields))


def _only_parse_errors(parse: Parse, text: str) -> None:
    try:
        parse(text)
    except ParseError as error:
        assert error.command and error.line_no >= 0


@SETTINGS
@given(st.data(), st.sampled_from(TABLES), st.sampled_from(["old", "new"]))
def test_random_tables_with_real_headers_parse_or_raise_parse_error(
    data: st.DataObject, target: tuple[Parse, str], style: Any
) -> None:
    parse, fixture = target
    real = _table_headers(fixture)
    headers = data.draw(
        st.lists(st.sampled_from([*real, "Extra", "Name"]), min_size=1, max_size=8, unique=True)
    )
    columns = [Column(h, data.draw(st.booleans())) for h in headers]
    rows = data.draw(st.lists(st.lists(cells, min_size=len(columns), max_size=len(columns)), max_size=5))
    _only_parse_errors(parse, render_table(columns, rows, style))


@SETTINGS
@given(st.data(), st.sampled_from(RECORDS))
def test_random_record_blocks_with_real_keys_parse_or_raise_parse_error(
    data: st.DataObject, target: tuple[Parse, str, bool]
) -> None:
    parse, fixture, titled = target
    keys = _record_keys(fixture, titled)
    blocks = []
    for _ in range(data.draw(st.integers(0, 3))):
        fields = data.draw(st.lists(st.tuples(st.sampled_from(keys), cells), max_size=len(keys) + 2))
        title = data.draw(st.text(cell_chars, min_size=1, max_size=10).map(str.strip)) if titled else None
        blocks.append(Block(title or None, tuple(fields)))
    _only_parse_errors(parse, render_records(blocks, data.draw(st.booleans())))


@SETTINGS
@given(st.sampled_from(TEXT_PARSERS), st.text(max_size=300))
def test_random_text_parses_or_raises_parse_error(parse: Parse, text: str) -> None:
    _only_parse_errors(parse, text)


@SETTINGS
@given(st.text(max_size=120))
def test_clock_parsers_never_raise(text: str) -> None:
    date = parse_date(text)
    assert date is None or (date[0] >= 0 and date[1] >= 0)
    comment = parse_clock_comment(text)
    assert comment is None or isinstance(comment[1], bool)


# --- quoting through real shells ------------------------------------------------------------------------

SHELLS = [["sh", "-c"]]
if shutil.which("busybox"):
    SHELLS.append(["busybox", "sh", "-c"])
# Anything an argv can hold: no NUL (C strings), no lone surrogates (not encodable).
arg_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
HOSTILE = st.one_of(
    st.text(arg_chars, max_size=20),
    st.sampled_from(
        ["$(touch pwned)", "`touch pwned`", "'", '"', "\\", "$HOME", "a\nb", "-o", "*", "~", "!"]
    ),
)


def _received(shell: list[str], argv: list[str], tmp_path: Any) -> list[str]:
    """What a real shell passes on when given command_line(argv): printf prints each argument."""
    line = command_line(["printf", "%s\\0", *argv])
    result = subprocess.run([*shell, line], capture_output=True, cwd=tmp_path, check=True, timeout=10)
    assert list(tmp_path.iterdir()) == []
    return result.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@settings(max_examples=60, deadline=None)
@given(argv=st.lists(HOSTILE, min_size=1, max_size=5))
def test_a_real_shell_receives_exactly_the_argv(
    shell: list[str], argv: list[str], tmp_path_factory: Any
) -> None:
    assert _received(shell, argv, tmp_path_factory.mktemp("q")) == argv


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@settings(max_examples=40, deadline=None)
@given(name=HOSTILE, ip=st.sampled_from([None, "10.0.0.1", "192.0.2.0/24"]), count=st.integers(1, 10**6))
def test_the_whole_capture_wrapper_reaches_the_shell_as_built(
    shell: list[str], name: str, ip: str | None, count: int, tmp_path_factory: Any
) -> None:
    try:
        pktcap = build_argv(
            CaptureSpec(
                Selector("dvfilter", name), ("PostDVFilter",), count=count, filters=FlowFilter(srcip=ip)
            ),
            Capabilities.for_version((8, 0, 2)),
            "esx01",
        )
    except UsageError:  # refused values never reach a host
        return
    argv = wrapper_argv("0123456789ab", 3600, pktcap)
    assert _received(shell, argv, tmp_path_factory.mktemp("w")) == argv


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@settings(max_examples=40, deadline=None)
@given(values=st.lists(HOSTILE, min_size=1, max_size=4))
def test_a_batch_of_hostile_commands_splits_back_per_command(
    shell: list[str], values: list[str], tmp_path_factory: Any
) -> None:
    batch = Batch(tuple(("printf", "%s", value) for value in values), "f00dbabe")
    where = tmp_path_factory.mktemp("b")
    result = subprocess.run(
        [*shell, command_line(batch.argv())], capture_output=True, cwd=where, timeout=10, check=True
    )
    assert batch.split(result.stdout.decode("utf-8", "surrogateescape")) == [(value, 0) for value in values]
    assert list(where.iterdir()) == []


# --- the transcoder on hostile streams ------------------------------------------------------------------


def _packets() -> list[Record]:
    return [
        Record(BASE_NS + i * 1000, len(f), f)
        for i, f in enumerate(udp_frame(i, 1, 10 + 7 * i) for i in range(8))
    ]


def _transcode_all(data: bytes, cuts: list[int]) -> tuple[list[bytes], CaptureFormatError | None]:
    """Feed the header, then transcode the rest in the given pieces: (blocks produced, error if any)."""
    reader = PcapngTranscoder()
    blocks: list[bytes] = []
    try:
        reader.feed(data[:24])
        if reader.header is None:
            reader.finish()
            return blocks, None
        pos = 24
        for cut in [*cuts, len(data)]:
            blocks.append(b"".join(reader.transcode(data[pos : pos + cut], interface=0).parts))
            pos += cut
        reader.finish()
    except CaptureFormatError as error:
        return blocks, error
    return blocks, None


def _file_of(blocks: list[bytes]) -> int:
    """Packets in a pcapng file made of one interface and these blocks, read by our file reader."""
    out = io.BytesIO()
    PcapngWriter(out).add_interface(Interface("x"))
    out.write(b"".join(blocks))
    out.seek(0)
    return sum(1 for _ in CaptureFile(out, "fuzz.pcapng"))


@SETTINGS
@given(
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=6),
    cut_end=st.integers(0, 4000),
    cuts=st.lists(st.integers(1, 700), max_size=6),
)
def test_transcoded_blocks_of_a_damaged_stream_form_a_readable_file(
    flips: list[tuple[int, int]], cut_end: int, cuts: list[int]
) -> None:
    data = bytearray(pcap_stream(_packets(), snaplen=1500))
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    data = data[: len(data) - cut_end % len(data)]
    blocks, _error = _transcode_all(bytes(data), cuts)
    packets = _file_of(blocks)
    if not flips:  # a stream that is only cut short loses nothing but its incomplete last packet
        assert packets == len(PcapStreamReader().feed(bytes(data)))


@SETTINGS
@given(junk=st.binary(max_size=600), cuts=st.lists(st.integers(1, 300), max_size=5))
def test_random_bytes_after_a_header_transcode_to_a_readable_file_or_our_error(
    junk: bytes, cuts: list[int]
) -> None:
    data = pcap_stream([], snaplen=256) + junk
    blocks, _error = _transcode_all(data, cuts)
    _file_of(blocks)
