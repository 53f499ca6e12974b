"""Host- and file-supplied text reaches the terminal only as printable characters: terminal escapes
(OSC 52 clipboard writes, title changes, screen clears) are shown as escapes, and nothing a host sends
is read as rich markup or an emoji code."""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import yaml
from clirun import esxcap, isolated_env

from esxcap.printable import printable
from esxcap.sim import SimulatorThread, topology_from_data

OSC52 = "\x1b]52;c;cHduZWQ=\x07"
"""A clipboard write: the terminal would put `pwned` on the clipboard."""
HOSTILE_VM = f"evil{OSC52}\x1b[2J\x9b31m\u202eyxz[bold]vm[/]"
EMOJI_MAC = "00:0c:29:ab:cd:01"
"""`:ab:` is rich's emoji code for 🆎."""


def test_printable_shows_every_control_and_format_character_as_an_escape() -> None:
    assert printable("web 01 データベース") == "web 01 データベース"
    assert printable(OSC52) == "\\x1b]52;c;cHduZWQ=\\x07"
    assert printable("a\x9bb\u202ec\x7f") == "a\\x9bb\\u202ec\\x7f"
    assert printable("one\ntwo\tthree") == "one\\x0atwo\tthree"
    assert printable("one\ntwo", keep_newlines=True) == "one\ntwo"


def test_hostile_vm_name_and_mac_are_shown_as_data_in_find_and_discover(tmp_path_factory, tmp_path) -> None:
    data: dict[str, Any] = copy.deepcopy(
        yaml.safe_load(resources.files("esxcap.sim").joinpath("default_topology.yaml").read_text("utf-8"))
    )
    vm = data["hosts"]["esx02"]["vms"][0]
    vm["name"], vm["vnics"][0]["mac"] = HOSTILE_VM, EMOJI_MAC
    data["flows"] = []
    with SimulatorThread(topology_from_data(data, "<hostile>"), tmp_path_factory.mktemp("esc")) as st:
        env = isolated_env(tmp_path)
        inventory = str(st.sim.inventory_path)
        found = esxcap("-i", inventory, "find", "evil*", env=env)
        discovered = esxcap("-i", inventory, "discover", "esx02", env=env)
    for result in (found, discovered):
        assert result.code == 0, result.stderr
        shown = result.stdout + result.stderr
        assert not any(ch in shown for ch in "\x1b\x07\x9b\u202e"), shown
        assert EMOJI_MAC in result.stdout and "🆎" not in shown
        assert "\\x1b]52;c;cHduZWQ=\\x07" in "".join(result.stdout.split())
        assert "[bold]vm[/]" in "".join(result.stdout.split())


def identifiers(document: Any) -> set[str]:
    """Every port ID, MAC and IPv4 address in a discover --json document."""
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("port_id", "mac", "ip", "ipv4") and value not in (None, ""):
                found.add(str(value))
            else:
                found |= identifiers(value)
    elif isinstance(document, list):
        for item in document:
            found |= identifiers(item)
    return found


def test_narrow_terminals_never_cut_a_port_id_mac_or_address(sim, tmp_path) -> None:
    inventory = str(sim.sim.inventory_path)
    document = esxcap("-i", inventory, "discover", "esx02", "--json", env=isolated_env(tmp_path)).json()
    wanted = identifiers(document)
    assert len(wanted) > 10
    for columns, layout in (("60", "Port ID:"), ("80", "Port ID:"), ("150", "│")):
        shown = esxcap("-i", inventory, "discover", "esx02", env=isolated_env(tmp_path, COLUMNS=columns))
        assert shown.code == 0, shown.stderr
        words = set(shown.stdout.replace("│", " ").replace("┃", " ").split())
        assert wanted <= words, (columns, wanted - words)
        assert layout in shown.stdout
        assert max(len(line) for line in shown.stdout.splitlines()) <= int(columns)
