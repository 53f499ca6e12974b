"""User values: canonical forms out; usage errors name the option, the value and the accepted form."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esxcap.errors import UsageError
from esxcap.esxi import validate
from esxcap.esxi.capabilities import KNOWN_POINTS

GOOD: list[tuple[Callable[..., object], object, object]] = [
    (validate.mac, "00:50:56:AB:cd:EF", "00:50:56:ab:cd:ef"),
    (validate.mac, "00-50-56-ab-cd-ef", "00:50:56:ab:cd:ef"),
    (validate.ipv4, "10.0.0.5", "10.0.0.5"),
    (validate.ipv4_prefix, "10.0.0.5", "10.0.0.5"),
    (validate.ipv4_prefix, "10.0.0.0/24", "10.0.0.0/24"),
    (validate.ipv4_prefix, "0.0.0.0/0", "0.0.0.0/0"),
    (validate.ipv4_prefix, "192.168.1.7/32", "192.168.1.7/32"),
    (validate.port, "0", 0),
    (validate.port, "65535", 65535),
    (validate.port, 443, 443),
    (validate.vlan, "4095", 4095),
    (validate.vlan, "0", 0),
    (validate.vxlan, "16777215", 16777215),
    (validate.switchport, "50331657", 50331657),
    (validate.switchport, "0x03000009", 50331657),
    (validate.switchport, "4294967295", 4294967295),
    (validate.count, "1", 1),
    (validate.snaplen, "0", 0),
    (validate.snaplen, "24", 24),
    (validate.snaplen, 1514, 1514),
    (validate.ethtype, "0x0800", "0x0800"),
    (validate.ethtype, "0x806", "0x0806"),
    (validate.ethtype, "0X86DD", "0x86dd"),
    (validate.ethtype, "arp", "0x0806"),
    (validate.proto, "0x06", "0x06"),
    (validate.proto, "0x1", "0x01"),
    (validate.proto, "TCP", "0x06"),
    (validate.proto, "udp", "0x11"),
    (validate.proto, "icmp", "0x01"),
    (validate.proto, "igmp", "0x02"),
    (validate.proto, "gre", "0x2f"),
    (validate.proto, "esp", "0x32"),
    (validate.vmk, "vmk0", "vmk0"),
    (validate.vmk, "VMK12", "vmk12"),
    (validate.uplink, "vmnic3", "vmnic3"),
    (validate.uplink, "vusb0", "vusb0"),
    (validate.lif_id, "138800000002", "138800000002"),
    (validate.dvfilter, "nic-36445-eth0-vmware-sfw.2", "nic-36445-eth0-vmware-sfw.2"),
    (validate.function, "vmkernel.IOChain_Resume", "vmkernel.IOChain_Resume"),
    (validate.function, "Net_Fn:0x10", "Net_Fn:0x10"),
    (validate.direction_code, "inputAndOutput", 2),
    (validate.direction_code, "1", 1),
    (validate.direction_code, "input", 0),
    (validate.stage_code, "post", 1),
    (validate.stage_code, 0, 0),
]

BAD: list[tuple[Callable[..., object], object, str]] = [
    (validate.mac, "00:50:56:ab:cd", "00:50:56:ab:cd:ef"),
    (validate.mac, "00:50-56:ab:cd:ef", "00:50:56:ab:cd:ef"),
    (validate.mac, "0050.56ab.cdef", "00:50:56:ab:cd:ef"),
    (validate.ipv4, "10.0.0.0/24", "10.0.0.5"),
    (validate.ipv4, "10.0.0.256", "10.0.0.5"),
    (validate.ipv4, "010.0.0.1", "10.0.0.5"),
    (validate.ipv4, "fe80::1", "10.0.0.5"),
    (validate.ipv4_prefix, "10.0.0.0/33", "/prefix 0-32"),
    (validate.ipv4_prefix, "10.0.0.0/", "/prefix 0-32"),
    (validate.ipv4_prefix, "10.0.0.0/08", "/prefix 0-32"),
    (validate.port, "65536", "0-65535"),
    (validate.port, "-1", "0-65535"),
    (validate.port, "http", "0-65535"),
    (validate.port, True, "0-65535"),
    (validate.vlan, "4096", "0-4095"),
    (validate.vxlan, "16777216", "0-16777215"),
    (validate.switchport, "4294967296", "50331657"),
    (validate.switchport, "port7", "50331657"),
    (validate.count, "0", "1 or more"),
    (validate.snaplen, "23", "24-"),
    (validate.snaplen, "1", "whole packet"),
    (validate.snaplen, "262145", "24-262144"),
    (validate.ethtype, "0800", "0x0800"),
    (validate.ethtype, "2048", "0x0800"),
    (validate.ethtype, "0x10000", "0x0800"),
    (validate.ethtype, "ip", "0x0800"),
    (validate.proto, "6", "0x06"),
    (validate.proto, "0x100", "0x06"),
    (validate.proto, "sctp", "tcp"),
    (validate.vmk, "vmk", "vmk0"),
    (validate.vmk, "vmk01", "vmk0"),
    (validate.vmk, "vmnic0", "vmk0"),
    (validate.uplink, "vmk0", "vmnic0"),
    (validate.uplink, "eth0", "vmnic0"),
    (validate.lif_id, "a b", "net-vdr"),
    (validate.dvfilter, "", "nic-36445-eth0-vmware-sfw.2"),
    (validate.dvfilter, "-o", "not starting with '-'"),
    (validate.dvfilter, "a b", "no spaces"),
    (validate.dvfilter, "a\x1bb", "control"),
    (validate.function, "a;b", "[module.]function[:offset]"),
    (validate.direction_code, "3", "inputAndOutput"),
    (validate.direction_code, "both", "inputAndOutput"),
    (validate.stage_code, "2", "0|pre"),
]


@pytest.mark.parametrize(("check", "value", "expected"), GOOD)
def test_accepted_values_come_out_canonical(
    check: Callable[..., object], value: object, expected: object
) -> None:
    assert check(value, "--opt") == expected
    # Canonical forms are accepted again unchanged (the builder re-validates what the CLI validated).
    assert check(expected, "--opt") == expected


@pytest.mark.parametrize(("check", "value", "accepted"), BAD)
def test_bad_values_name_option_value_and_accepted_form(
    check: Callable[..., object], value: object, accepted: str
) -> None:
    with pytest.raises(UsageError) as caught:
        check(value, "--the-option")
    assert caught.value.message.startswith("--the-option:")
    assert repr(str(value)) in caught.value.message
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("accepted: ")
    assert accepted in caught.value.hint


def test_capture_point_names_map_case_insensitively_to_canonical_spelling() -> None:
    assert validate.capture_point("vnicrx", "--point", KNOWN_POINTS) == "VnicRx"
    assert validate.capture_point("vNicTx", "--point", KNOWN_POINTS) == "VnicTx"
    assert validate.capture_point(" UPLINKRCVKERNEL ", "--point", KNOWN_POINTS) == "UplinkRcvKernel"
    assert validate.capture_point("EnsInput", "--point", ("ENSInput",)) == "ENSInput"
    with pytest.raises(UsageError) as caught:
        validate.capture_point("UplinkRcvKernel0", "--point", KNOWN_POINTS)
    assert "--point" in caught.value.message
    assert "UplinkRcvKernel0" in caught.value.message
    assert caught.value.hint is not None and "esxcap points HOST" in caught.value.hint


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_accepted_dvfilter_names_are_printable_single_tokens(text: str) -> None:
    try:
        name = validate.dvfilter(text, "--dvfilter")
    except UsageError:
        return
    assert name == text
    assert not name.startswith("-")
    assert name.isprintable()
    assert not any(ch.isspace() for ch in name)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=32), st.ip_addresses(v=4))
def test_any_ipv4_with_any_prefix_round_trips(prefix: int, address: object) -> None:
    text = f"{address}/{prefix}"
    assert validate.ipv4_prefix(text, "--srcip") == text


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=6, max_size=6), st.sampled_from([":", "-"]), st.booleans())
def test_any_mac_in_either_notation_comes_out_lower_colon(raw: bytes, sep: str, upper: bool) -> None:
    text = sep.join(f"{b:02x}" for b in raw)
    assert validate.mac(text.upper() if upper else text, "--mac") == ":".join(f"{b:02x}" for b in raw)
