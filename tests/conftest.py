"""Shared fixtures: the verbatim ESXi samples and running simulators.

`sim` is a started `SimulatorThread` on the packaged default topology (hosts esx01 5.5, esx02 6.7,
esx03 8.0) in a fresh state dir; `make_sim(data)` starts one from a topology dict shaped like the YAML
(see esxcap/sim/default_topology.yaml). Both stop at the end of the test.
`openssh` is OpenSSH's sshd serving FAST_TOPOLOGY's hosts `new` and `mid` through the command shims
(bench/esxi_sshd.py); after each test nothing may be left running on them.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh  # noqa: TID251 - capture tests talk to the simulator as an SSH client
import pytest
from tiers import pytest_collection_modifyitems  # noqa: F401 - marks every test with its tiers

from bench.esxi_sshd import EsxiSshd, SshdUnavailable, start_esxi_sshd
from esxcap.esxi.lifecycle import GRACE_SECONDS
from esxcap.sim import SimulatorThread, load_topology, topology_from_data
from esxcap.ssh.transport.asyncssh_receive import CHECKED_VERSIONS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "esxi"

MakeSim = Callable[..., SimulatorThread]

FAST_RECEIVE_CHECKED = pytest.mark.skipif(
    asyncssh.__version__ not in CHECKED_VERSIONS,
    reason=f"asyncssh {asyncssh.__version__} is not a release the fast receive path was checked against "
    f"({', '.join(CHECKED_VERSIONS)}); esxcap reads through asyncssh's own code there",
)
"""Marks tests of asyncssh_receive's fast path: it is installed only under releases it was checked against."""


def fixture_text(name: str) -> str:
    """A verbatim sample from tests/fixtures/esxi, bytes kept as they are."""
    return (FIXTURES / name).read_bytes().decode("utf-8")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorThread]:
    with SimulatorThread(load_topology(), tmp_path / "sim") as running:
        yield running


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    """The packaged default topology's simulator, shared by the tests of one module."""
    with SimulatorThread(load_topology(), tmp_path_factory.mktemp("sim")) as sim_thread:
        yield sim_thread


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No default keys, no agent: only what a test hands over (a key, a password) can log in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[MakeSim]:
    started: list[SimulatorThread] = []

    def make(data: dict[str, Any], port_base: int = 0) -> SimulatorThread:
        thread = SimulatorThread(
            topology_from_data(data, "<test topology>"), tmp_path / f"sim{len(started)}", port_base
        )
        thread.__enter__()
        started.append(thread)
        return thread

    yield make
    for thread in reversed(started):
        thread.__exit__(None, None, None)


# --- the capture side: a fast topology and an SSH client for its tests -----------------------------------

FAST_TOPOLOGY: dict[str, Any] = {
    "hosts": {
        "old": {
            "version": "5.5.0",
            "build": "3248547",
            "clock_skew_ms": 120,
            "faults": {"date_nanoseconds": False},
            "uplinks": [
                {
                    "name": "vmnic0",
                    "pci": "0000:02:00.0",
                    "driver": "tg3",
                    "mac": "00:25:b5:00:01:0a",
                    "description": "NIC",
                }
            ],
            "vswitches": [
                {"name": "vSwitch0", "uplinks": ["vmnic0"], "portgroups": [{"name": "Apps", "vlan": 30}]}
            ],
            "vms": [
                {
                    "name": "a1",
                    "vnics": [{"mac": "00:50:56:8a:10:01", "ip": "10.0.30.5", "portgroup": "Apps"}],
                },
                {
                    "name": "a2",
                    "vnics": [{"mac": "00:50:56:8a:10:02", "ip": "10.0.30.6", "portgroup": "Apps"}],
                },
            ],
        },
        "mid": {
            "version": "6.7.0",
            "build": "8169922",
            "clock_skew_ms": -35,
            "faults": {"date_nanoseconds": False, "pktcap_sigint": "inherit"},
            "uplinks": [
                {
                    "name": "vmnic0",
                    "pci": "0000:02:00.0",
                    "driver": "ntg3",
                    "mac": "20:67:7c:d9:a1:6c",
                    "description": "NIC",
                }
            ],
            "vswitches": [
                {
                    "name": "vSwitch0",
                    "uplinks": ["vmnic0"],
                    "portgroups": [{"name": "Server", "vlan": 20}, {"name": "Mgmt", "vlan": 0}],
                }
            ],
            "vmknics": [
                {"name": "vmk0", "mac": "20:67:7c:d9:a1:6c", "ipv4": "10.0.0.12", "portgroup": "Mgmt"}
            ],
            "vms": [
                {
                    "name": "m1",
                    "vnics": [{"mac": "00:50:56:9a:20:01", "ip": "10.0.20.11", "portgroup": "Server"}],
                },
                {
                    "name": "m2",
                    "vnics": [{"mac": "00:50:56:9a:20:02", "ip": "10.0.20.12", "portgroup": "Server"}],
                },
            ],
        },
        "new": {
            "version": "8.0.2",
            "build": "22380479",
            "uplinks": [
                {
                    "name": "vmnic0",
                    "pci": "0000:03:00.0",
                    "driver": "ixgben",
                    "mac": "a4:bf:01:4e:37:14",
                    "description": "NIC",
                }
            ],
            "vswitches": [
                {
                    "name": "vSwitch0",
                    "uplinks": ["vmnic0"],
                    "portgroups": [
                        {"name": "Server", "vlan": 20},
                        {"name": "DB", "vlan": 120},
                        {"name": "Mgmt", "vlan": 0},
                    ],
                }
            ],
            "vmknics": [
                {"name": "vmk0", "mac": "a4:bf:01:4e:37:14", "ipv4": "10.0.0.13", "portgroup": "Mgmt"}
            ],
            "vms": [
                {
                    "name": "n1",
                    "vnics": [{"mac": "00:50:56:a2:30:01", "ip": "10.0.20.21", "portgroup": "Server"}],
                },
                {
                    "name": "n2",
                    "vnics": [
                        {
                            "mac": "00:50:56:a2:30:02",
                            "ip": "10.0.120.22",
                            "portgroup": "DB",
                            "filters": ["fw"],
                        }
                    ],
                },
            ],
        },
    },
    "flows": [
        {"name": "ping-n1-m1", "from": "n1", "to": "m1", "kind": "icmp", "rate_pps": 200},
        {"name": "ping-a1-a2", "from": "a1", "to": "a2", "kind": "icmp", "rate_pps": 200},
        {"name": "sql-m2-n1", "from": "m2", "to": "n1", "kind": "tcp", "port": 5432, "rate_pps": 200},
        {"name": "dns-n1-m1", "from": "n1", "to": "m1", "kind": "dns", "rate_pps": 100},
        {"name": "arp-m1-m2", "from": "m1", "to": "m2", "kind": "arp", "rate_pps": 100},
        {
            "name": "https-n1-n2",
            "from": "n1",
            "to": "n2",
            "kind": "tcp",
            "port": 443,
            "rate_pps": 100,
            "drop": True,
        },
        {
            "name": "ping-vmk",
            "from": {"host": "mid", "vmk": "vmk0"},
            "to": {"host": "new", "vmk": "vmk0"},
            "kind": "icmp",
            "rate_pps": 100,
        },
    ],
}
"""Three hosts (5.5, 6.7, 8.0) with fast flows of every kind, so capture tests end within a second; the
5.5 and 6.7 hosts' `date` prints `%N` literally (BusyBox without nanoseconds), the 8.0 host's does not;
on the OpenSSH tier mid's pktcap-uw keeps an inherited SIG_IGN for SIGINT, new's handles SIGINT anyway."""


@pytest.fixture(scope="module")
def fast_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorThread]:
    topology = topology_from_data(FAST_TOPOLOGY, "<fast topology>")
    with SimulatorThread(topology, tmp_path_factory.mktemp("fastsim")) as running:
        yield running


@asynccontextmanager
async def ssh(st: SimulatorThread, host: str) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """A root connection to one simulated host (the state dir's client key)."""
    port = st.sim.hosts[host].port
    async with asyncssh.connect(
        "127.0.0.1", port, username="root", client_keys=[str(st.sim.client_key_path)], known_hosts=None
    ) as conn:
        yield conn


async def ssh_exec(
    st: SimulatorThread, host: str, argv: Sequence[str], timeout: float = 10
) -> tuple[int, bytes, bytes]:
    """Run argv (quoted once) to its end: (exit status, stdout, stderr)."""
    async with ssh(st, host) as conn:
        proc = await conn.create_process(shlex.join(argv), encoding=None)
        out, err = await asyncio.wait_for(asyncio.gather(proc.stdout.read(), proc.stderr.read()), timeout)
        await proc.wait_closed()
        return proc.exit_status, out, err


def streaming(st: SimulatorThread, host: str, packets: int = 3) -> bool:
    """Whether the host's captures have sent at least `packets` packets."""

    async def sent() -> int:
        return sum(p.packets for p in st.sim.hosts[host].processes.pktcaps())

    return st.call(sent()) >= packets


def run_exec(
    st: SimulatorThread, host: str, argv: Sequence[str], timeout: float = 10
) -> tuple[int, bytes, bytes]:
    return asyncio.run(ssh_exec(st, host, argv, timeout))


# --- OpenSSH's sshd serving simulated hosts ----------------------------------------------------------------


@pytest.fixture(scope="module")
def openssh_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EsxiSshd]:
    try:
        server = start_esxi_sshd(tmp_path_factory.mktemp("openssh"), FAST_TOPOLOGY, ("new", "mid"))
    except SshdUnavailable as exc:
        pytest.skip(f"the OpenSSH tier needs sshd and BusyBox: {exc}")
    yield server
    server.stop()


@pytest.fixture
def openssh(openssh_hosts: EsxiSshd) -> Iterator[EsxiSshd]:
    """The hosts; afterwards every process and pidfile of the test must be gone (else removed, and the
    test fails)."""
    yield openssh_hosts
    left = openssh_hosts.leftovers(wait=GRACE_SECONDS + 2)
    pidfiles = openssh_hosts.remove_pidfiles()
    assert not left and not pidfiles, f"left on the hosts: processes {left}, pidfiles {pidfiles}"
