"""Picker choices (Wireshark's target selector): hostile names come back byte for byte through a value
that extcap syntax can carry, and a value nobody offered is refused (the offered list itself is checked
against the simulator in test_extcap)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esxcap.errors import UsageError
from esxcap.plan.choices import encode, request_for, shown
from esxcap.plan.planner import TargetRequest

HOSTILE = [
    "web 01",
    'qa "quoted" $(id) & co',
    "a}{b",
    "100%",
    "back\\slash",
    "new\nline",
    "データベース01",
    "x:y:z",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_vm_name_survives_its_value(name: str) -> None:
    value = f"vm:2:{encode(name)}"
    assert not set(value) & set("{}\\\n")
    assert request_for(value) == TargetRequest("vm", name, nic="2")


@given(st.text(min_size=1))
def test_any_name_survives_its_value(name: str) -> None:
    assert request_for(f"vmk:{encode(name)}") == TargetRequest("vmk", name)
    assert not set(shown(name)) & set("{}\\\n")


@pytest.mark.parametrize("value", ["", "vm", "vm:0:web", "vm:x:web", "vm:1:", "vmk:", "drop:x", "switch:1"])
def test_a_value_nobody_offered_is_refused(value: str) -> None:
    with pytest.raises(UsageError, match="is not one esxcap offers"):
        request_for(value)
