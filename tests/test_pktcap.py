"""pktcap-uw argv building, the capability table, the in/out/both plans, and the `-A` listing."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.errors import ParseError, UsageError
from esxcap.esxi.capabilities import (
    KNOWN_POINTS,
    Capabilities,
    parse_available_points,
    render_available_points,
)
from esxcap.esxi.pktcap import CaptureSpec, FlowFilter, Selector, StreamPlan, build_argv, points_for
from esxcap.esxi.pktcap_output import Trailer, parse_trailer, read_available_points
from esxcap.esxi.remote import command_line

V55, V60, V65, V67, V70, V80 = (5, 5, 0), (6, 0, 0), (6, 5, 0), (6, 7, 0), (7, 0, 3), (8, 0, 2)
VERSIONS = (V55, V60, V65, V67, V70, V80)
OLD = Capabilities.for_version(V60)
NEW = Capabilities.for_version(V80)
PORT = Selector("switchport", 50331657)

FLAGS = {
    "--switchport",
    "--vmk",
    "--uplink",
    "--lifID",
    "--dvfilter",
    "--capture",
    "--dir",
    "--stage",
    "--kernelside",
    "-f",
    "-c",
    "-s",
    "--ng",
    "-o",
    "--srcmac",
    "--dstmac",
    "--mac",
    "--ethtype",
    "--vlan",
    "--srcip",
    "--dstip",
    "--ip",
    "--proto",
    "--srcport",
    "--dstport",
    "--tcpport",
    "--vxlan",
    "--srctcpport",
    "--dsttcpport",
    "--udpport",
    "--srcudpport",
    "--dstudpport",
}


def test_builds_the_documented_example() -> None:
    spec = CaptureSpec(PORT, ("VnicTx",), count=100, filters=FlowFilter(proto="icmp"))
    assert build_argv(spec, NEW, "esx01") == [
        "pktcap-uw",
        "--switchport",
        "50331657",
        "--capture",
        "VnicTx",
        "-c",
        "100",
        "-s",
        "0",
        "--proto",
        "0x01",
        "-o",
        "-",
    ]


def test_selectors_points_and_values_come_out_canonical() -> None:
    spec = CaptureSpec(
        Selector("switchport", "0x03000009"),
        ("vnicrx", "VNICTX"),
        dir="inputAndOutput",
        filters=FlowFilter(srcmac="00-50-56-AB-CD-EF", ethtype="arp", srcip="10.0.0.0/24"),
    )
    assert build_argv(spec, NEW, "esx01") == [
        "pktcap-uw",
        "--switchport",
        "50331657",
        "--capture",
        "VnicRx,VnicTx",
        "--dir",
        "2",
        "-s",
        "0",
        "--srcmac",
        "00:50:56:ab:cd:ef",
        "--ethtype",
        "0x0806",
        "--srcip",
        "10.0.0.0/24",
        "-o",
        "-",
    ]


# Specs that together use every option esxcap sends, on a host that supports them all.
EVERY_OPTION = [
    CaptureSpec(
        Selector("vmk", "VMK1"),
        dir=1,
        stage="post",
        count=5,
        snaplen=128,
        ng=True,
        filters=FlowFilter(
            srcmac="00:50:56:00:00:01",
            dstmac="00:50:56:00:00:02",
            mac="00:50:56:00:00:03",
            ethtype="0x0800",
            vlan=100,
            srcip="10.0.0.1",
            dstip="10.0.0.0/8",
            ip="10.0.0.2",
            proto="tcp",
            srcport=1,
            dstport=2,
            tcpport=3,
            vxlan=5001,
            srctcpport=4,
            dsttcpport=5,
        ),
    ),
    CaptureSpec(
        Selector("uplink", "vmnic2"),
        dir=0,
        kernelside=True,
        filters=FlowFilter(proto="udp", udpport=53, srcudpport=5353, dstudpport=53),
    ),
    CaptureSpec(Selector("uplink", "vmnic2"), ("UplinkRcvKernel",)),
    CaptureSpec(Selector("lifID", "138800000002"), ("VdrRxLeaf",)),
    CaptureSpec(Selector("dvfilter", "nic-36445-eth0-vmware-sfw.2"), ("PreDVFilter",)),
    CaptureSpec(PORT, ("IOChain",), function="vmkernel.IOChain_Resume:0x10"),
]


def test_every_option_appears_in_a_built_argv() -> None:
    seen = {arg for spec in EVERY_OPTION for arg in build_argv(spec, NEW, "esx01") if arg.startswith("-")}
    assert seen - {"-"} == FLAGS
    first = build_argv(EVERY_OPTION[0], NEW, "esx01")
    assert first[:3] == ["pktcap-uw", "--vmk", "vmk1"]
    assert first[first.index("--stage") + 1] == "1"
    assert first[first.index("--proto") + 1] == "0x06"
    assert first[-3:] == ["--ng", "-o", "-"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_basic_options_work_on_every_version(version: tuple[int, ...]) -> None:
    caps = Capabilities.for_version(version)
    spec = CaptureSpec(
        Selector("uplink", "vmnic0"),
        dir=1,
        stage=0,
        kernelside=True,
        count=3,
        snaplen=0,
        filters=FlowFilter(
            srcmac="00:50:56:00:00:01",
            ethtype="0x0800",
            vlan=7,
            srcip="10.1.1.1",
            proto="0x06",
            tcpport=22,
            vxlan=1,
        ),
    )
    argv = build_argv(spec, caps, "h")
    assert argv[:5] == ["pktcap-uw", "--uplink", "vmnic0", "--dir", "1"]
    assert "--tcpport" in argv and argv[-2:] == ["-o", "-"]


REFUSALS = [
    (V60, CaptureSpec(PORT, dir=2), "--dir 2", "each direction in its own stream"),
    (V65, CaptureSpec(PORT, ("VnicRx",)), "VnicRx", "Vmxnet3Rx"),
    (V80, CaptureSpec(PORT, ("Vmxnet3Tx",)), "Vmxnet3Tx", "VnicTx"),
    (V65, CaptureSpec(Selector("uplink", "vmnic1"), ("UplinkRcvKernel",)), "UplinkRcvKernel", "UplinkRcv"),
    (V65, CaptureSpec(Selector("vmk", "vmk0"), ("TcpipRx",)), "TcpipRx", "PortInput"),
    (V60, CaptureSpec(PORT, ("PortInput", "PortOutput")), "one capture point per run", "own stream"),
    (V80, CaptureSpec(PORT, ("PortInput", "portinput")), "twice", "once"),
    (V65, CaptureSpec(PORT, filters=FlowFilter(udpport=53)), "--udpport", "--proto 0x11"),
    (V60, CaptureSpec(PORT, filters=FlowFilter(srctcpport=22)), "--srctcpport", "--srcport"),
    (V55, CaptureSpec(PORT, ng=True), "pcapng", "plain pcap"),
    (V65, CaptureSpec(PORT, ("IOChain",), function="Fn:0x10"), ":offset", "without an offset"),
    ((5, 1, 0), CaptureSpec(PORT), "5.5", "tcpdump-uw"),
    (V80, CaptureSpec(Selector("dvfilter", "f.1")), "needs a point or a stage", "--stage"),
    (
        V80,
        CaptureSpec(Selector("dvfilter", "f.1"), ("PortInput",)),
        "PreDVFilter/PostDVFilter",
        "PreDVFilter",
    ),
    (V80, CaptureSpec(PORT, ("PostDVFilter",)), "need --dvfilter", "--dvfilter"),
    (V80, CaptureSpec(Selector("vmk", "vmk0"), ("Drop",)), "Drop point takes --switchport", "switch port"),
    (V70, CaptureSpec(PORT, ("Drop",)), "before ESXi 8.0", "host-wide"),
    (V80, CaptureSpec(Selector("none"), ("Drop", "PktFree")), "no other point", "own stream"),
    (V67, CaptureSpec(PORT, filters=FlowFilter(rcf="host 10.0.0.5")), "--rcf", "flow-filter options"),
    (V80, CaptureSpec(Selector("none"), ("PortInput",)), "need a selector", "--switchport"),
    (V80, CaptureSpec(Selector("none")), "no capture point", "--point"),
    (V80, CaptureSpec(Selector("lifID", "1388"), ("PortInput",)), "Vdr* point", "VdrRxLeaf"),
    (V80, CaptureSpec(PORT, ("VdrTxLeaf",)), "need --lif", "--lif"),
    (V80, CaptureSpec(Selector("vmk", "vmk0"), ("VnicRx",)), "--switchport", "--switchport"),
    (V80, CaptureSpec(PORT, ("UplinkSndKernel",)), "need --uplink", "vmnicN"),
    (
        V80,
        CaptureSpec(Selector("dvfilter", "f.1"), stage=0, kernelside=True),
        "--kernelside",
        "drop --kernelside",
    ),
    (V80, CaptureSpec(Selector("none"), ("Dynamic",)), "needs a function", "-f"),
    (V80, CaptureSpec(PORT, ("PortInput",), function="Fn"), "-f applies", "drop -f"),
    (V80, CaptureSpec(PORT, filters=FlowFilter(tcpport=80, udpport=53)), "never match", "one protocol"),
    (V80, CaptureSpec(PORT, filters=FlowFilter(proto="udp", dstport=80)), "--proto is 0x11", "--proto 0x06"),
    (V80, CaptureSpec(PORT, filters=FlowFilter(proto="tcp", udpport=53)), "--proto is 0x06", "--proto 0x11"),
]


@pytest.mark.parametrize(("version", "spec", "problem", "alternative"), REFUSALS)
def test_refusals_name_host_version_and_alternative(
    version: tuple[int, ...], spec: CaptureSpec, problem: str, alternative: str
) -> None:
    with pytest.raises(UsageError) as caught:
        build_argv(spec, Capabilities.for_version(version), "esx07")
    label = ".".join(map(str, version))
    assert caught.value.message.startswith(f"esx07 (ESXi {label}): ")
    assert problem in caught.value.message
    assert caught.value.hint is not None and alternative in caught.value.hint


@pytest.mark.parametrize(
    ("spec", "option"),
    [
        (CaptureSpec(Selector("switchport", "web01")), "--switchport"),
        (CaptureSpec(Selector("vmk", "vmnic0")), "--vmk"),
        (CaptureSpec(Selector("uplink", "vmk0")), "--uplink"),
        (CaptureSpec(Selector("dvfilter", "-x"), ("PreDVFilter",)), "--dvfilter"),
        (CaptureSpec(PORT, ("NoSuchPoint",)), "--point"),  # esxcap's name for pktcap-uw's --capture
        (CaptureSpec(PORT, dir=3), "--dir"),
        (CaptureSpec(PORT, dir=1, stage="middle"), "--stage"),
        (CaptureSpec(PORT, count=0), "-c"),
        (CaptureSpec(PORT, snaplen=10), "-s"),
        (CaptureSpec(PORT, filters=FlowFilter(vlan=4096)), "--vlan"),
        (CaptureSpec(PORT, filters=FlowFilter(ip="10.0.0.0/8")), "--ip"),
        (CaptureSpec(PORT, filters=FlowFilter(ethtype="0800")), "--ethtype"),
        (CaptureSpec(PORT, filters=FlowFilter(dstmac="zz:zz:zz:zz:zz:zz")), "--dstmac"),
    ],
)
def test_bad_values_are_refused_naming_the_option(spec: CaptureSpec, option: str) -> None:
    with pytest.raises(UsageError) as caught:
        build_argv(spec, NEW, "esx01")
    assert caught.value.message.startswith(f"{option}: invalid value")
    assert caught.value.hint is not None and caught.value.hint.startswith("accepted: ")


def _argv_is_safe(argv: list[str]) -> None:
    for index, arg in enumerate(argv):
        assert arg.isprintable() and "\n" not in arg
        if arg.startswith("-"):
            assert arg in FLAGS or (arg == "-" and argv[index - 1] == "-o"), arg
    assert shlex.split(command_line(argv)) == argv


HOSTILE = st.one_of(
    st.text(),
    st.sampled_from(
        ["evil$(touch /tmp/x);x", "-o /tmp/x", "--capture", "a'b", "x\ny", "`id`", "PortInput,Drop"]
    ),
)


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_hostile_dvfilter_names_never_become_options_or_control_chars(name: str) -> None:
    try:
        argv = build_argv(CaptureSpec(Selector("dvfilter", name), ("PostDVFilter",)), NEW, "esx01")
    except UsageError:
        return
    assert argv[1:3] == ["--dvfilter", name]
    _argv_is_safe(argv)


@settings(max_examples=200, deadline=None)
@given(st.lists(HOSTILE, min_size=1, max_size=3), st.sampled_from(VERSIONS))
def test_hostile_point_names_are_refused_or_canonical(points: list[str], version: tuple[int, ...]) -> None:
    caps = Capabilities.for_version(version)
    try:
        argv = build_argv(CaptureSpec(PORT, tuple(points)), caps, "esx01")
    except UsageError:
        return
    assert all(point in caps.points for point in argv[argv.index("--capture") + 1].split(","))
    _argv_is_safe(argv)


def test_capability_table_follows_the_reference() -> None:
    old, v67 = Capabilities.for_version(V65), Capabilities.for_version(V67)
    assert {"Vmxnet3Rx", "Vmxnet3Tx"} <= set(old.points)
    assert not {"VnicRx", "UplinkRcvKernel"} & set(old.points)
    assert {"VnicRx", "VnicTx", "UplinkRcvKernel", "TcpipRx", "EnsPortReaderRx"} <= set(v67.points)
    # Renamed within 6.7: both names are possible there (the host's -A decides), only VnicRx/Tx later.
    assert {"Vmxnet3Rx", "Vmxnet3Tx"} <= set(v67.points)
    assert not {"Vmxnet3Rx", "Vmxnet3Tx"} & set(Capabilities.for_version(V70).points)
    assert points_for("vnic", "in", v67)[0].points == ("VnicRx",)
    # 8.x: ENSInput is new; UplinkRcv is still listed (marked obsolete) but UplinkRcvKernel is planned.
    assert "ENSInput" in NEW.points and {"UplinkRcv", "UplinkRcvKernel"} <= set(NEW.points)
    assert points_for("uplink", "in", NEW)[0].points == ("UplinkRcvKernel",)
    assert "UplinkRcv" in Capabilities.for_version(V70).points
    assert (Capabilities.for_version(V70).drop_with_port, NEW.drop_with_port) == (False, True)
    assert (v67.rcf, Capabilities.for_version(V70).rcf, NEW.rcf) == (False, True, True)
    # `-A` order: PreDVFilter/PostDVFilter are entries 12 and 13 on 8.0.
    assert NEW.points.index("PreDVFilter") == 11 and NEW.points.index("PostDVFilter") == 12
    assert NEW.points[0] == "Dynamic"
    assert (old.dir_both, old.multi_point, old.later_port_filters, old.dir_words) == (False,) * 4
    assert (v67.dir_both, v67.multi_point, v67.later_port_filters, v67.dir_words) == (True,) * 4
    assert (v67.stage_words, NEW.stage_words) == (False, True)
    assert Capabilities.for_version((5, 5, 0)).pcapng is False and OLD.pcapng is True
    assert Capabilities.for_version((9, 0, 0)).points == NEW.points
    assert set(NEW.points) <= set(KNOWN_POINTS)


def test_points_listed_by_the_host_win_over_the_table() -> None:
    listed = ("Dynamic", "VnicRx", "VnicTx", "PortInput", "PortOutput", "ENSInput")
    caps = Capabilities.for_version(V65).with_points(listed)
    assert caps.points_from_host and caps.points == listed
    assert points_for("vnic", "in", caps)[0].points == ("VnicRx",)
    argv = build_argv(CaptureSpec(PORT, ("ensinput",)), caps, "esx01")
    assert argv[argv.index("--capture") + 1] == "ENSInput"
    with pytest.raises(UsageError) as caught:
        build_argv(CaptureSpec(PORT, ("Vmxnet3Rx",)), caps, "esx01")
    assert "VnicRx" in (caught.value.hint or "")
    with pytest.raises(UsageError) as caught:
        build_argv(CaptureSpec(PORT, ("PktFree",)), caps, "esx01")
    assert caught.value.hint == "points on this host: " + ", ".join(listed)


def _plan(version: tuple[int, ...], kind: str, direction: str) -> tuple[tuple[tuple[str, ...], object], ...]:
    caps = Capabilities.for_version(version)
    return tuple((s.points, s.dir) for s in points_for(kind, direction, caps))  # type: ignore[arg-type]


OLD_VERSIONS = (V55, V60, V65)
NEW_VERSIONS = (V67, V70, V80)


@pytest.mark.parametrize("version", VERSIONS)
def test_in_and_out_map_to_the_points_of_each_kind(version: tuple[int, ...]) -> None:
    old = version in OLD_VERSIONS
    vnic_in, vnic_out = ("Vmxnet3Rx", "Vmxnet3Tx") if old else ("VnicRx", "VnicTx")
    wire_in, wire_out = ("UplinkRcv", "UplinkSnd") if old else ("UplinkRcvKernel", "UplinkSndKernel")
    assert _plan(version, "vnic", "in") == (((vnic_in,), None),)
    assert _plan(version, "vnic", "out") == (((vnic_out,), None),)
    for kind in ("vmk", "switchport"):
        assert _plan(version, kind, "in") == ((("PortOutput",), None),)
        assert _plan(version, kind, "out") == ((("PortInput",), None),)
    assert _plan(version, "uplink", "in") == (((wire_in,), None),)
    assert _plan(version, "uplink", "out") == (((wire_out,), None),)


@pytest.mark.parametrize("version", OLD_VERSIONS)
def test_both_directions_on_old_hosts_are_one_stream_per_point(version: tuple[int, ...]) -> None:
    assert _plan(version, "vnic", "both") == ((("Vmxnet3Rx",), None), (("Vmxnet3Tx",), None))
    assert _plan(version, "vmk", "both") == ((("PortOutput",), None), (("PortInput",), None))
    assert _plan(version, "switchport", "both") == ((("PortOutput",), None), (("PortInput",), None))
    assert _plan(version, "uplink", "both") == ((("UplinkRcv",), None), (("UplinkSnd",), None))


@pytest.mark.parametrize("version", NEW_VERSIONS)
def test_both_directions_on_new_hosts_are_one_stream(version: tuple[int, ...]) -> None:
    assert _plan(version, "vnic", "both") == ((("VnicRx", "VnicTx"), None),)
    assert _plan(version, "vmk", "both") == (((), 2),)
    assert _plan(version, "switchport", "both") == (((), 2),)
    assert _plan(version, "uplink", "both") == ((("UplinkRcvKernel", "UplinkSndKernel"), None),)
    split = points_for("vnic", "both", Capabilities.for_version(version), separate=True)
    assert split == (
        StreamPlan(("VnicRx",), None, "VnicRx", "in"),
        StreamPlan(("VnicTx",), None, "VnicTx", "out"),
    )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("kind", "selector"),
    [
        ("vnic", PORT),
        ("switchport", PORT),
        ("vmk", Selector("vmk", "vmk0")),
        ("uplink", Selector("uplink", "vmnic0")),
    ],
)
def test_every_plan_builds_on_its_version(version: tuple[int, ...], kind: str, selector: Selector) -> None:
    caps = Capabilities.for_version(version)
    for direction in ("in", "out", "both"):
        streams = points_for(kind, direction, caps)  # type: ignore[arg-type]
        for stream in streams:
            argv = build_argv(CaptureSpec(selector, stream.points, stream.dir), caps, "esx01")
            assert argv[-2:] == ["-o", "-"]
            assert stream.direction == direction or direction == "both"
            assert stream.label == (",".join(stream.points) or "PortOutput,PortInput")


def test_plan_labels_name_the_points() -> None:
    (stream,) = points_for("vmk", "both", NEW)
    assert (stream.label, stream.direction) == ("PortOutput,PortInput", "both")
    (stream,) = points_for("vnic", "out", OLD)
    assert (stream.label, stream.direction) == ("Vmxnet3Tx", "out")


@pytest.mark.parametrize("version", VERSIONS)
def test_available_points_render_and_parse_back(version: tuple[int, ...]) -> None:
    points = Capabilities.for_version(version).points
    text = render_available_points(points)
    assert text.splitlines()[1] == "\t1: Dynamic -- The dynamic inserted runtime capture point."
    assert parse_available_points(text) == points


def test_available_points_parser_tolerates_bare_names_and_unknown_points() -> None:
    text = "Supported capture points:\n\n 1: Dynamic -- x -- y\n2: ENSInput\nPktFree\n  VnicRx  \n"
    assert parse_available_points(text) == ("Dynamic", "ENSInput", "PktFree", "VnicRx")
    assert parse_available_points("Drop\n") == ("Drop",)


@pytest.mark.parametrize(
    ("text", "line_no"),
    [
        ("Supported capture points:\n\t1: Dynamic -- d\nerror: something broke\n", 3),
        ("\t1: Dynamic -- d\nSupported capture points:\n", 2),
        ("1: Dynamic\n2: Dynamic\n", 2),
        ("1: Two Words -- d\n", 1),
        ("1: Dynamic--d\n", 1),
        ("-sh: pktcap-uw: not found\n", 1),
        ("", 0),
        ("Supported capture points:\n", 0),
    ],
)
def test_available_points_parser_refuses_garbage(text: str, line_no: int) -> None:
    with pytest.raises(ParseError) as caught:
        parse_available_points(text)
    assert caught.value.command == "pktcap-uw -A"
    assert caught.value.line_no == line_no


def test_evidence_combinations_build_on_the_versions_that_have_them() -> None:
    drop = build_argv(CaptureSpec(PORT, ("Drop",)), NEW, "esx01")
    assert drop[:4] == ["pktcap-uw", "--switchport", "50331657", "--capture"] and "Drop" in drop
    kernel = build_argv(CaptureSpec(PORT, ("PortOutput",), kernelside=True), OLD, "esx01")
    assert "--kernelside" in kernel and kernel[1] == "--switchport"
    assert "UplinkRcv" in build_argv(CaptureSpec(Selector("uplink", "vmnic0"), ("UplinkRcv",)), NEW, "h")


@pytest.mark.parametrize(
    "expression",
    ["host 10.0.0.5 and tcp port 443", "geneve and host 10.1.1.5", "not (port 22); rm -rf / $(id) `x` 'q'"],
)
def test_filter_expression_is_one_argv_element_on_7_and_later(expression: str) -> None:
    for version in (V70, V80):
        argv = build_argv(
            CaptureSpec(PORT, filters=FlowFilter(rcf=expression)), Capabilities.for_version(version), "h"
        )
        assert argv[argv.index("--rcf") + 1] == expression
        assert shlex.split(command_line(argv)) == argv


@pytest.mark.parametrize("expression", ["", "   ", "-o /tmp/x", "host a\nhost b", "x" * 1025])
def test_filter_expression_refuses_what_cannot_be_one_expression(expression: str) -> None:
    with pytest.raises(UsageError) as caught:
        build_argv(CaptureSpec(PORT, filters=FlowFilter(rcf=expression)), NEW, "esx01")
    assert "--filter" in caught.value.message and "pcap filter expression" in (caught.value.hint or "")


def test_filter_expression_refused_before_7_names_host_version_and_flow_filters() -> None:
    with pytest.raises(UsageError) as caught:
        build_argv(
            CaptureSpec(PORT, filters=FlowFilter(rcf="tcp port 443")), Capabilities.for_version(V67), "esx03"
        )
    assert caught.value.message.startswith("esx03 (ESXi 6.7.0): pktcap-uw has no --rcf")
    assert "--tcpport" in (caught.value.hint or "") and "--ip" in (caught.value.hint or "")


def test_lenient_listing_skips_what_it_cannot_read_and_says_so() -> None:
    text = (
        "Supported capture points:\n"
        "\t1: Dynamic -- d\n"
        "pktcap: \t2: UplinkRcv -- (obsoleted) d\n"
        "pktcap: Listen on port 7799.\n"
        "\n"
        "Warning: something odd\n"
        "\t3: ENSInput -- e\n"
        "\t4: Dynamic -- again\n"
    )
    listing = read_available_points(text)
    assert listing.points == ("Dynamic", "UplinkRcv", "ENSInput")
    assert [s.split(" (")[0] for s in listing.skipped] == ["line 4", "line 6", "line 8"]
    assert "listed twice" in listing.skipped[2]
    said = listing.warnings("esx01")
    assert len(said) == 3 and said[1].startswith("esx01: pktcap-uw -A: skipped line 6")
    empty = read_available_points("-sh: pktcap-uw: not found\n")
    assert empty.points == () and "using the table for its ESXi version" in empty.warnings("esx01")[-1]


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (b"Dump thread exiting... \nDumped 3 packet to console, dropped 0 packets.\nDone.\n", Trailer(3, 0)),
        (b"pktcap: Dumped 57 packets to file -, dropped 4 packets.\n", Trailer(57, 4)),
        (b"Dump: 10, broken : 0, drop: 0, file err: 0\nDump: 42, broken : 1, drop: 7, file err: 2\n",
         Trailer(42, 7, 1, 2)),
        (b"Accept...Vsock connection from port 1027 cid 2\n", None),
    ],
)  # fmt: skip
def test_trailer_in_both_forms(stderr: bytes, expected: Trailer | None) -> None:
    assert parse_trailer(stderr) == expected
