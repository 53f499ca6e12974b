"""The suite's tiers, as pytest markers: `pure` (in-process code, quick local shells and files; `make
test-fast`), `processes` (the capture wrapper under BusyBox sh as local processes, its signals and deadlines
waited for in real time), `simulator` (SSH to the in-process ESXi simulator or an in-process asyncssh
server, govmomi's vCenter simulator, or the real CLI in a subprocess), `openssh` (OpenSSH's sshd on
127.0.0.1), `tshark` (files read back with tshark/capinfos).

Each test module names the tiers of its tests in MODULE_TIERS; a test also takes the tier of the fixtures
it uses (FIXTURE_TIERS) and `tshark` when it is skipped without tshark; `pure` stays only on a test with no
other tier. A module missing from MODULE_TIERS stops the collection, so a new module is placed when added.
"""

from __future__ import annotations

import pytest

PURE, PROCESSES, SIMULATOR, OPENSSH, TSHARK = "pure", "processes", "simulator", "openssh", "tshark"

MODULE_TIERS: dict[str, tuple[str, ...]] = {
    "test_analyze": (SIMULATOR, TSHARK),
    "test_anonymize": (SIMULATOR, TSHARK),
    "test_asyncssh_receive": (SIMULATOR,),
    "test_bench_helpers": (PURE,),
    "test_block_window": (PURE,),
    "test_bundle": (SIMULATOR, TSHARK),
    "test_capture_discovery": (SIMULATOR,),
    "test_choices": (PURE,),
    "test_cli_capture": (SIMULATOR, TSHARK),
    "test_cli_capture_plan": (SIMULATOR,),
    "test_cli_coercion": (PURE,),
    "test_cli_discover": (SIMULATOR,),
    "test_cli_front": (SIMULATOR,),
    "test_cli_options": (SIMULATOR,),
    "test_cli_trigger": (SIMULATOR, TSHARK),
    "test_clock": (PURE,),
    "test_contract": (PURE,),
    "test_decode": (PURE,),
    "test_doctor": (SIMULATOR,),
    "test_exit_codes": (SIMULATOR,),
    "test_extcap": (SIMULATOR, TSHARK),
    "test_extcap_install": (SIMULATOR,),
    "test_faults": (SIMULATOR, OPENSSH, TSHARK),
    "test_fan_out": (SIMULATOR,),
    "test_filemerge": (PURE,),
    "test_first_look": (PURE,),
    "test_fuzz": (PURE,),
    "test_host_memory": (SIMULATOR,),
    "test_host_output": (PURE,),
    "test_inventory": (PURE,),
    "test_known_hosts": (SIMULATOR,),
    "test_lifecycle": (PROCESSES,),
    "test_liboqs_lookup": (PROCESSES,),
    "test_live_keep": (SIMULATOR, TSHARK),
    "test_logins": (SIMULATOR,),
    "test_long_streams": (OPENSSH,),
    "test_merge": (PURE,),
    "test_metadata": (SIMULATOR, TSHARK),
    "test_multihost": (SIMULATOR, TSHARK),
    "test_openssh_tier": (OPENSSH, TSHARK),
    "test_outputs": (SIMULATOR,),
    "test_packet_direction": (SIMULATOR, TSHARK),
    "test_parser_properties": (PURE,),
    "test_parsers": (PURE,),
    "test_path": (PURE,),
    "test_pcap": (PURE,),
    "test_pcapng": (PURE,),
    "test_pktcap": (PURE,),
    "test_printable": (SIMULATOR,),
    "test_proxy_jump": (SIMULATOR, OPENSSH),
    "test_recipes": (SIMULATOR,),
    "test_remote": (PURE,),
    "test_ring": (SIMULATOR, TSHARK),
    "test_security": (SIMULATOR,),
    "test_sim_pktcap": (SIMULATOR, TSHARK),
    "test_sim_processes": (SIMULATOR,),
    "test_sim_render": (PURE,),
    "test_sim_server": (SIMULATOR,),
    "test_sim_traffic": (SIMULATOR, TSHARK),
    "test_sinks": (PURE,),
    "test_sizes": (PURE,),
    "test_stream_outputs": (SIMULATOR,),
    "test_targets": (PURE,),
    "test_transport": (SIMULATOR,),
    "test_triggers": (PURE,),
    "test_upload": (SIMULATOR, TSHARK),
    "test_validate": (PURE,),
    "test_vcenter": (PURE,),
    "test_viewers": (PURE,),
}
FIXTURE_TIERS = {
    "sim": SIMULATOR,
    "make_sim": SIMULATOR,
    "fast_sim": SIMULATOR,
    "running": SIMULATOR,
    "vcsim": SIMULATOR,
    "openssh": OPENSSH,
    "openssh_hosts": OPENSSH,
    "sshd": OPENSSH,
    "certified_sshd": OPENSSH,
}


def tiers_of(item: pytest.Item) -> set[str]:
    """The tiers of one collected test."""
    module = item.path.stem
    if module not in MODULE_TIERS:
        raise pytest.UsageError(f"{item.path.name}: name its tiers in MODULE_TIERS (tests/tiers.py)")
    tiers = set(MODULE_TIERS[module])
    tiers |= {FIXTURE_TIERS[name] for name in getattr(item, "fixturenames", ()) if name in FIXTURE_TIERS}
    if any("tshark" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")):
        tiers.add(TSHARK)
    if len(tiers) > 1:
        tiers.discard(PURE)
    return tiers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for tier in sorted(tiers_of(item)):
            item.add_marker(getattr(pytest.mark, tier))
