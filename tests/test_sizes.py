"""Sizes as admins write them and as esxcap shows them: one reading for every size option."""

from __future__ import annotations

import pytest

from esxcap.plan.sizes import human_size, size_in_bytes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2048", 2048),
        ("100b", 100),
        ("500k", 500 * 1024),
        ("10M", 10 * 2**20),
        ("10MiB", 10 * 2**20),
        ("10 MB", 10 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("2t", 2 * 2**40),
    ],
)
def test_sizes_read_as_admins_write_them(text: str, size: int) -> None:
    assert size_in_bytes(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5", "10ib", "1e9", "10 M B"])
def test_what_is_no_size(text: str) -> None:
    assert size_in_bytes(text) is None


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (98, "98 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (10 * 2**20, "10.0 MiB"),
        (2**62, "4.0 EiB"),
    ],
)
def test_sizes_shown_as_people_read_them(size: int, shown: str) -> None:
    assert human_size(size) == shown
