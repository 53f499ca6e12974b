"""The simulated world: hosts, their switches, uplinks, vmknics and VMs, as frozen dataclasses.

Everything a renderer or (later) the traffic model needs is here, already resolved: every vNIC, vmknic
and uplink that sits on a switch has a `SwitchPort` with its 32-bit port id (`portset_id << 24 | index`,
bit 31 set on uplink ports from 7.0 on, REFERENCE §2.3 / §6.4), its portgroup and its VLAN.
Built by `esxcap.sim.loader` from YAML; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from esxcap.esxi.models import EsxiVersion

PortKind = Literal["uplink", "vmknic", "vnic"]
FlowKind = Literal["icmp", "arp", "dns", "tcp", "bulk", "udp-closed"]

NET_STATS_TYPE: dict[PortKind, int] = {"vmknic": 3, "uplink": 4, "vnic": 5}
"""`net-stats -l` Type column (REFERENCE §2.3, INFERRED meaning)."""

ADAPTER_SUBTYPE = {"vmxnet3": 9, "e1000": 7, "e1000e": 7}
"""`net-stats -l` SubType of a vNIC by adapter (9 seen on vmxnet3 VMs; 7 for e1000 is INFERRED)."""

UPLINK_BIT = 1 << 31


@dataclass(frozen=True)
class Uplink:
    """A physical NIC (vmnic) as `esxcli network nic list` shows it."""

    name: str
    pci: str
    driver: str
    speed: int
    duplex: str
    link: str
    admin: str
    mac: str
    mtu: int
    description: str
    port_index: int | None = None


@dataclass(frozen=True)
class PortGroup:
    """A standard-vSwitch portgroup."""

    name: str
    vlan: int


@dataclass(frozen=True)
class StandardSwitch:
    """A standard vSwitch; `used_ports` None means "count the ports in use"."""

    name: str
    mtu: int
    uplinks: tuple[str, ...]
    portgroups: tuple[PortGroup, ...]
    portset_id: int
    num_ports: int
    configured_ports: int
    used_ports: int | None
    cdp_status: str


@dataclass(frozen=True)
class DvPortgroup:
    """A distributed portgroup: display name, key (`dvportgroup-4024`), VLAN and its DVPort keys."""

    name: str
    key: str
    vlan: int
    ports: tuple[str, ...]


@dataclass(frozen=True)
class DistributedSwitch:
    """A vSphere Distributed Switch as one host sees it; `portset` is its `DvsPortset-N` name."""

    name: str
    vds_id: str
    mtu: int
    uplinks: tuple[str, ...]
    portgroups: tuple[DvPortgroup, ...]
    portset_id: int
    portset: str
    num_ports: int
    configured_ports: int
    used_ports: int | None
    cdp_status: str


@dataclass(frozen=True)
class Vmknic:
    """A VMkernel NIC; `portgroup` names a standard portgroup or a DVPortgroup (then `dvport` is set)."""

    name: str
    mac: str
    ipv4: str
    netmask: str
    gateway: str | None
    portgroup: str
    dvport: str | None
    mtu: int
    netstack: str
    enabled: bool
    port_index: int | None = None


@dataclass(frozen=True)
class VNic:
    """A VM's virtual NIC `eth<index>`; `ip` None when VMware Tools report none."""

    index: int
    mac: str
    ip: str | None
    portgroup: str
    adapter: str
    dvport: str | None
    filters: tuple[str, ...]
    port_index: int | None = None


@dataclass(frozen=True)
class Vm:
    """A VM; only running VMs have a world and show up in `esxcli network vm list`."""

    name: str
    world_id: int
    running: bool
    vnics: tuple[VNic, ...]


@dataclass(frozen=True)
class SwitchPort:
    """One port of a vSwitch/DVS as `net-stats -l` and `vm port list` see it, with its network facts.

    `switch` is the vSwitch or DVS name, `portset` the `net-stats` SwitchName (`vSwitch0`, `DvsPortset-0`),
    `client` the net-stats ClientName (`vmnic0`, `vmk0`, `web 01.eth0`). `team_uplink` is the uplink this
    port's traffic leaves by (None when the switch has no uplink with link up).
    """

    port_id: int
    kind: PortKind
    subtype: int
    switch: str
    portset: str
    mac: str
    client: str
    portgroup: str | None
    vlan: int
    dvport: str | None
    team_uplink: str | None
    world_id: int | None = None
    vnic_index: int | None = None

    @property
    def net_stats_type(self) -> int:
        return NET_STATS_TYPE[self.kind]


PKTCAP_SIGINT = ("handle", "inherit")


@dataclass(frozen=True)
class Faults:
    """Ways a host misbehaves, for fault tests; all off by default.

    `silent`: accepts TCP connections but never speaks SSH. `hang_commands`: every command except a
    capture never returns (its channel stays open until the client closes it). `pktcap_garbage`:
    pktcap-uw prints its console text dump on stdout instead of pcap. `pktcap_fail_after`: pktcap-uw
    exits 1 with an error once it has written at least this many packets. `session_timeout_s`: every
    SSH session is ended by the host this many seconds after it started, without an exit status (as an
    ESXi shell timeout does). `password_method`: the SSH `password` method is offered besides
    keyboard-interactive. `password_retry_prompt`: a wrong keyboard-interactive answer is followed by
    another `Password: ` prompt in the same exchange (as PAM may do). `lockdown`: the host is in lockdown
    mode and root is no exception user: every login is refused, the right key and password included.
    `login_delay_ms`: each login waits this long before authentication starts (a slow PAM or directory).

    Output real hosts may print that esxcap must read rather than refuse (REFERENCE §9):
    `vms_gone`: VMs that `vm list` shows but that power off before their `vm port list`.
    `stray_lines`: commands (`esxcli network nic list`, `net-stats -l`, ...) that print a warning line
    on stderr before their output. `net_stats_odd_row`: `net-stats -l` ends with a row whose columns
    are not where net-stats puts them. `net_stats_bare_names`: a VM's first vNIC on a standard vSwitch
    shows the bare VM name as ClientName (no `.eth0`). `points_listing`: `pktcap-uw -A` is `table`
    (the inferred layout), `noisy` (7.x `pktcap: ` lines, blank and unknown lines among the points) or
    `unreadable` (no point line at all). `pktcap_drops`: the drop count in pktcap-uw's trailer.
    `date_nanoseconds`: false = BusyBox `date` built without FEATURE_DATE_NANO (prints `%N` as is).
    `vnic_points`: on 6.7, which names pktcap-uw has for the vNIC points - `both` (the table),
    `Vnic` (VnicRx/Tx, 6.7 U2+ transcripts) or `Vmxnet3` (Vmxnet3Rx/Tx, the 6.7 guide).
    `pktcap_sigint`: how the shims' pktcap-uw (a real process) treats SIGINT, unknown for the real tool:
    `handle` installs its handler whatever it inherited; `inherit` does so only when SIGINT was not
    ignored at its start (the classic C idiom), so a pktcap-uw started by `cmd &` under BusyBox sh never
    sees it.
    `flood`: every command except a capture prints without end on "stdout" or "stderr".
    `pktcap_ignores_int`: the in-process simulator's pktcap-uw ignores SIGINT altogether (as one that
    installs no handler and was started with INT ignored would): only TERM or KILL end it, no trailer.
    """

    silent: bool = False
    hang_commands: bool = False
    pktcap_garbage: bool = False
    pktcap_fail_after: int | None = None
    session_timeout_s: int | None = None
    password_method: bool = False
    password_retry_prompt: bool = False
    lockdown: bool = False
    login_delay_ms: int = 0
    vms_gone: tuple[str, ...] = ()
    stray_lines: tuple[str, ...] = ()
    net_stats_odd_row: bool = False
    net_stats_bare_names: bool = False
    points_listing: str = "table"
    pktcap_drops: int = 0
    date_nanoseconds: bool = True
    vnic_points: str = "both"
    pktcap_sigint: str = "handle"
    flood: str | None = None
    pktcap_ignores_int: bool = False


@dataclass(frozen=True)
class Host:
    """One simulated ESXi host: its persona (version, build, update), its network and its faults."""

    name: str
    version: str
    build: str
    update: str
    patch: str
    build_date: str
    clock_skew_ms: int
    password: str
    uplinks: tuple[Uplink, ...]
    vswitches: tuple[StandardSwitch, ...]
    dvswitches: tuple[DistributedSwitch, ...]
    vmknics: tuple[Vmknic, ...]
    vms: tuple[Vm, ...]
    ports: tuple[SwitchPort, ...]
    faults: Faults = Faults()
    esxcli_latency_ms: int = 0
    """How long each `esxcli` call takes before it answers (real hosts: about 500-1000 ms)."""
    shell_timeout_s: int = 0
    """/UserVars/ESXiShellTimeOut: the SSH service stops this long after it was started (0: never)."""
    shell_interactive_timeout_s: int = 0
    """/UserVars/ESXiShellInteractiveTimeOut: idle sessions are closed after this long (0: never)."""

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    @property
    def esxi_version(self) -> EsxiVersion:
        return EsxiVersion("VMware ESXi", self.version, self.build, self.update, self.patch)

    @property
    def legacy_ssh(self) -> bool:
        """5.x / 6.0 personas offer only SHA-1-era SSH algorithms."""
        return self.version_tuple < (6, 5)

    def running_vms(self) -> tuple[Vm, ...]:
        return tuple(vm for vm in self.vms if vm.running)

    def vm_by_world(self, world_id: int) -> Vm | None:
        return next((vm for vm in self.running_vms() if vm.world_id == world_id), None)

    def uplink(self, name: str) -> Uplink | None:
        return next((u for u in self.uplinks if u.name == name), None)

    def port_of_client(self, client: str) -> SwitchPort | None:
        """The switch port of a vmknic or uplink by name."""
        return next((p for p in self.ports if p.client == client and p.world_id is None), None)

    def vnic_ports(self, vm: Vm) -> tuple[SwitchPort, ...]:
        """The ports of a VM's vNICs, in vNIC order."""
        by_index = {p.vnic_index: p for p in self.ports if p.world_id == vm.world_id and p.kind == "vnic"}
        return tuple(by_index[n.index] for n in vm.vnics if n.index in by_index)

    def switch_ports(self, switch: str) -> tuple[SwitchPort, ...]:
        return tuple(p for p in self.ports if p.switch == switch)


@dataclass(frozen=True)
class FlowEnd:
    """One end of a flow: a VM's vNIC (`vm`, `nic` index) or a host's vmknic (`host`, `vmk`)."""

    vm: str | None = None
    nic: int = 0
    host: str | None = None
    vmk: str | None = None

    def __str__(self) -> str:
        return f"{self.host}/{self.vmk}" if self.vm is None else f"{self.vm} eth{self.nic}"


@dataclass(frozen=True)
class Flow:
    """Traffic between two ends (`esxcap.sim.traffic`); `port` is the server's TCP/UDP port."""

    name: str
    src: FlowEnd
    dst: FlowEnd
    kind: FlowKind
    port: int
    rate_pps: float
    drop: bool = False
    retransmit_every: int = 0
    """tcp: every Nth connection sends its request twice (0: never)."""
    unanswered_every: int = 0
    """tcp: every Nth connection's SYN (and its retransmission) gets no answer (0: never)."""


@dataclass(frozen=True)
class Latency:
    """Per-hop delay inside a host (a range, fixed per hop) and across the wire between hosts."""

    hop_us: tuple[int, int] = (50, 200)
    link_us: int = 300


@dataclass(frozen=True)
class Topology:
    """All simulated hosts, in file order, and their traffic; `source` names the file they came from."""

    hosts: tuple[Host, ...]
    source: str
    flows: tuple[Flow, ...] = ()
    latency: Latency = Latency()

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)
