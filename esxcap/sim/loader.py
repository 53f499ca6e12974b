"""Topology YAML -> `Topology`: strict validation with errors that name the file and the key.

`topology_from_data` is pure (parsed YAML in, frozen dataclasses out); `load_topology_file` only adds the
file read. The YAML shape is documented at the top of `default_topology.yaml`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from esxcap.errors import ConfigError
from esxcap.sim.ports import Member, PortPlan, build_ports
from esxcap.sim.topology import (
    ADAPTER_SUBTYPE,
    PKTCAP_SIGINT,
    DistributedSwitch,
    DvPortgroup,
    Faults,
    Flow,
    FlowEnd,
    Host,
    Latency,
    PortGroup,
    StandardSwitch,
    Topology,
    Uplink,
    Vm,
    Vmknic,
    VNic,
)
from esxcap.sim.traffic import resolve_flows

_MISSING = object()
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIGITS = re.compile(r"^\d+$")
_VDS_ID = re.compile(r"^([0-9a-f]{2} ){7}[0-9a-f]{2}-([0-9a-f]{2} ){7}[0-9a-f]{2}$")
DEFAULT_PASSWORD = "esxcap-sim"  # noqa: S105 - the simulator's documented default login
DEFAULT_BUILD_DATE = "Jan  1 2024 00:00:00"


def load_topology_file(path: Path) -> Topology:
    """Read and validate a topology YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read topology file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return topology_from_data(data, str(path))


def topology_from_data(data: object, source: str) -> Topology:
    """Validate parsed YAML (or an equivalent dict built in a test) into a Topology."""
    top = _Fields(data, "", source)
    hosts_node = top.get("hosts")
    if not isinstance(hosts_node, dict):
        raise ConfigError(f"{source}: hosts: expected a mapping of host name to host")
    hosts = tuple(_host(str(name), node, f"hosts.{name}", source) for name, node in hosts_node.items())
    if not hosts:
        raise ConfigError(f"{source}: hosts: no hosts defined", "add at least one host under 'hosts:'")
    flows = tuple(_flow(_Fields(item, p, source), i) for i, (p, item) in enumerate(top.items("flows")))
    latency = _latency(top)
    top.done()
    _check_unique(source, "", "flows", [f.name for f in flows], "name")
    topology = Topology(hosts, source, flows, latency)
    resolve_flows(topology)
    return topology


_FLOW_KINDS = ("icmp", "arp", "dns", "tcp", "bulk", "udp-closed")
_DEFAULT_PORTS = {"dns": 53, "tcp": 80, "bulk": 9, "udp-closed": 33434}


def _flow(f: _Fields, index: int) -> Flow:
    kind = f.text("kind", check=lambda v: v in _FLOW_KINDS)
    rate = f.get("rate_pps", 10)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1_000_000:
        raise f.error("rate_pps", f"expected a rate from 0 to 1000000 packets per second, got {rate!r}")
    flow = Flow(
        name=f.text("name", f"flow{index + 1}"),
        src=_flow_end(f, "from"),
        dst=_flow_end(f, "to"),
        kind=kind,  # type: ignore[arg-type]  # checked against _FLOW_KINDS
        port=f.number("port", _DEFAULT_PORTS.get(kind, 0), hi=65535),
        rate_pps=float(rate),
        drop=f.flag("drop", False),
        **_flow_faults(f, kind),
    )
    f.done()
    return flow


def _flow_faults(f: _Fields, kind: str) -> dict[str, int]:
    g = _Fields(f.get("faults", {}), f"{f.path}.faults", f.source)
    faults = {key: g.number(key, 0, hi=1000) for key in ("retransmit_every", "unanswered_every")}
    for key, every in faults.items():
        if every and kind != "tcp":
            raise g.error(key, f"only tcp flows have {key}, this one is {kind}")
    g.done()
    return faults


def _flow_end(f: _Fields, key: str) -> FlowEnd:
    node = f.get(key)
    if isinstance(node, str | int) and not isinstance(node, bool):
        return FlowEnd(vm=str(node))
    g = _Fields(node, f"{f.path}.{key}", f.source)
    if g.get("vm", None) is not None:
        end = FlowEnd(vm=g.text("vm"), nic=g.number("nic", 0, hi=9))
    else:
        end = FlowEnd(host=g.text("host"), vmk=g.text("vmk", check=lambda v: bool(re.match(r"^vmk\d+$", v))))
    g.done()
    return end


def _latency(top: _Fields) -> Latency:
    node = top.get("latency", {})
    f = _Fields(node, "latency", top.source)
    hop = f.get("hop_us", [50, 200])
    if (
        not isinstance(hop, list)
        or len(hop) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in hop)
        or hop[0] > hop[1]
    ):
        raise f.error("hop_us", f"expected [min, max] microseconds, got {hop!r}")
    latency = Latency((hop[0], hop[1]), f.number("link_us", 300, hi=10**7))
    f.done()
    return latency


@dataclass
class _Fields:
    """One YAML mapping being read: typed getters, and `done()` rejects keys nobody asked for."""

    data: object
    path: str
    source: str
    used: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not isinstance(self.data, dict):
            raise ConfigError(f"{self.source}: {self.path or '<top>'}: expected a mapping")

    @property
    def _map(self) -> dict[Any, Any]:
        assert isinstance(self.data, dict)
        return self.data

    def error(self, key: str, reason: str) -> ConfigError:
        where = f"{self.path}.{key}" if self.path else key
        return ConfigError(f"{self.source}: {where}: {reason}")

    def get(self, key: str, default: object = _MISSING) -> Any:
        self.used.add(key)
        if key in self._map and self._map[key] is not None:
            return self._map[key]
        if default is _MISSING:
            raise self.error(key, "missing")
        return default

    def text(self, key: str, default: object = _MISSING, check: Callable[[str], bool] | None = None) -> str:
        value = self.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        if check is not None and not check(value):
            raise self.error(key, f"invalid value {value!r}")
        return value

    def opt_text(self, key: str, check: Callable[[str], bool] | None = None) -> str | None:
        return None if self.get(key, None) is None else self.text(key, check=check)

    def number(self, key: str, default: object = _MISSING, lo: int = 0, hi: int = 2**32 - 1) -> int:
        value = self.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.error(key, f"expected an integer from {lo} to {hi}, got {value!r}")
        return value

    def opt_number(self, key: str, lo: int = 0, hi: int = 2**32 - 1) -> int | None:
        return None if self.get(key, None) is None else self.number(key, lo=lo, hi=hi)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def items(self, key: str) -> list[tuple[str, Any]]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise self.error(key, "expected a list")
        return [(f"{self.path}.{key}[{i}]", item) for i, item in enumerate(value)]

    def names(self, key: str) -> tuple[str, ...]:
        out = []
        for path, item in self.items(key):
            if not isinstance(item, str):
                raise ConfigError(f"{self.source}: {path}: expected a name, got {item!r}")
            out.append(item)
        return tuple(out)

    def done(self) -> None:
        unknown = sorted(str(k) for k in self._map if str(k) not in self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _is_digits(value: str) -> bool:
    return bool(_DIGITS.match(value))


def _is_mac(value: str) -> bool:
    return bool(_MAC.match(value))


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _host(name: str, node: object, path: str, source: str) -> Host:
    if not _HOST_NAME.match(name):
        raise ConfigError(f"{source}: {path}: host names use letters, digits, '.', '_' and '-' only")
    f = _Fields(node, path, source)
    version = f.text("version", check=lambda v: bool(_VERSION.match(v)))
    vt = tuple(int(p) for p in version.split("."))
    uplinks = tuple(_uplink(_Fields(item, p, source)) for p, item in f.items("uplinks"))
    plan = PortPlan(vt, uplinks, source)
    portset = 2 if vt < (7,) else 4
    vswitches = []
    for p, item in f.items("vswitches"):
        vswitches.append(_vswitch(_Fields(item, p, source), vt, portset, plan))
        portset = vswitches[-1].portset_id + 2
    dvswitches = []
    for n, (p, item) in enumerate(f.items("dvswitches")):
        dvswitches.append(_dvswitch(_Fields(item, p, source), n, portset, plan))
        portset = dvswitches[-1].portset_id + 2
    vmknics = tuple(_vmknic(_Fields(item, p, source), plan) for p, item in f.items("vmknics"))
    vms = tuple(
        _vm(_Fields(item, p, source), 2100400 + 1000 * i, plan) for i, (p, item) in enumerate(f.items("vms"))
    )
    host = Host(
        name=name,
        version=version,
        build=f.text("build", check=_is_digits),
        update=f.text("update", "0", check=_is_digits),
        patch=f.text("patch", "0", check=_is_digits),
        build_date=f.text("build_date", DEFAULT_BUILD_DATE),
        clock_skew_ms=f.number("clock_skew_ms", 0, lo=-(10**9), hi=10**9),
        esxcli_latency_ms=f.number("esxcli_latency_ms", 0, lo=0, hi=60_000),
        shell_timeout_s=f.number("shell_timeout_s", 0, hi=86_400),
        shell_interactive_timeout_s=f.number("shell_interactive_timeout_s", 0, hi=86_400),
        password=f.text("password", DEFAULT_PASSWORD),
        uplinks=uplinks,
        vswitches=tuple(vswitches),
        dvswitches=tuple(dvswitches),
        vmknics=vmknics,
        vms=vms,
        ports=(),
        faults=_faults(_Fields(f.get("faults", {}), f"{path}.faults", source)),
    )
    f.done()
    _check_unique(source, path, "vms", [str(vm.world_id) for vm in vms], "world_id")
    _check_unique(source, path, "vmknics", [v.name for v in vmknics], "name")
    return build_ports(host, plan)


POINTS_LISTINGS = ("table", "noisy", "unreadable")


def _faults(f: _Fields) -> Faults:
    faults = Faults(
        silent=f.flag("silent", False),
        hang_commands=f.flag("hang_commands", False),
        pktcap_garbage=f.flag("pktcap_garbage", False),
        pktcap_fail_after=f.opt_number("pktcap_fail_after"),
        session_timeout_s=f.opt_number("session_timeout_s", lo=1),
        password_method=f.flag("password_method", False),
        password_retry_prompt=f.flag("password_retry_prompt", False),
        lockdown=f.flag("lockdown", False),
        login_delay_ms=f.number("login_delay_ms", 0),
        vms_gone=f.names("vms_gone"),
        stray_lines=f.names("stray_lines"),
        net_stats_odd_row=f.flag("net_stats_odd_row", False),
        net_stats_bare_names=f.flag("net_stats_bare_names", False),
        points_listing=f.text("points_listing", "table", check=lambda v: v in POINTS_LISTINGS),
        pktcap_drops=f.number("pktcap_drops", 0),
        date_nanoseconds=f.flag("date_nanoseconds", True),
        vnic_points=f.text("vnic_points", "both", check=lambda v: v in ("both", "Vnic", "Vmxnet3")),
        pktcap_sigint=f.text("pktcap_sigint", "handle", check=lambda v: v in PKTCAP_SIGINT),
        flood=f.opt_text("flood", lambda v: v in ("stdout", "stderr")),
        pktcap_ignores_int=f.flag("pktcap_ignores_int", False),
    )
    f.done()
    return faults


def _check_unique(source: str, path: str, key: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{source}: {path}.{key}[{i}].{what}: duplicate {value!r}")
        seen.add(value)


def _uplink(f: _Fields) -> Uplink:
    link = f.text("link", "Up", check=lambda v: v in ("Up", "Down"))
    uplink = Uplink(
        name=f.text("name", check=lambda v: bool(re.match(r"^vmnic\d+$", v))),
        pci=f.text("pci"),
        driver=f.text("driver"),
        speed=f.number("speed", 1000 if link == "Up" else 0),
        duplex=f.text("duplex", "Full" if link == "Up" else "Half", check=lambda v: v in ("Full", "Half")),
        link=link,
        admin=f.text("admin", "Up", check=lambda v: v in ("Up", "Down")),
        mac=f.text("mac", check=_is_mac),
        mtu=f.number("mtu", 1500, lo=68, hi=9000),
        description=f.text("description"),
        port_index=f.opt_number("port_index", hi=0xFFFFFF),
    )
    f.done()
    return uplink


def _vswitch(f: _Fields, vt: tuple[int, ...], portset: int, plan: PortPlan) -> StandardSwitch:
    name = f.text("name")
    groups = []
    for p, item in f.items("portgroups"):
        g = _Fields(item, p, f.source)
        pg = PortGroup(g.text("name"), g.number("vlan", 0, hi=4095))
        g.done()
        plan.add_portgroup(pg.name, name, pg.vlan, None, f"{p}.name")
        groups.append(pg)
    switch = StandardSwitch(
        name=name,
        mtu=f.number("mtu", 1500, lo=68, hi=9000),
        uplinks=plan.claim_uplinks(f.names("uplinks"), name, f"{f.path}.uplinks"),
        portgroups=tuple(groups),
        portset_id=f.number("portset_id", portset, lo=1, hi=0x7F),
        num_ports=f.number("num_ports", 4736 if vt < (7,) else 6400),
        configured_ports=f.number("configured_ports", 128),
        used_ports=f.opt_number("used_ports"),
        cdp_status=f.text("cdp_status", "listen"),
    )
    f.done()
    plan.add_switch(switch.name, switch.name, switch.portset_id, switch.uplinks, f"{f.path}.portset_id")
    return switch


def _dvswitch(f: _Fields, n: int, portset: int, plan: PortPlan) -> DistributedSwitch:
    name = f.text("name")
    groups = []
    for p, item in f.items("portgroups"):
        g = _Fields(item, p, f.source)
        ports = g.names("ports")
        pg = DvPortgroup(g.text("name"), g.text("key"), g.number("vlan", 0, hi=4095), ports)
        g.done()
        plan.add_portgroup(pg.name, name, pg.vlan, pg.ports, f"{p}.name")
        groups.append(pg)
    switch = DistributedSwitch(
        name=name,
        vds_id=f.text("vds_id", check=lambda v: bool(_VDS_ID.match(v))),
        mtu=f.number("mtu", 1500, lo=68, hi=9000),
        uplinks=plan.claim_uplinks(f.names("uplinks"), name, f"{f.path}.uplinks"),
        portgroups=tuple(groups),
        portset_id=f.number("portset_id", portset, lo=1, hi=0x7F),
        portset=f"DvsPortset-{n}",
        num_ports=f.number("num_ports", 1590),
        configured_ports=f.number("configured_ports", 512),
        used_ports=f.opt_number("used_ports"),
        cdp_status=f.text("cdp_status", "listen"),
    )
    f.done()
    plan.add_switch(switch.name, switch.portset, switch.portset_id, switch.uplinks, f"{f.path}.portset_id")
    return switch


def _vmknic(f: _Fields, plan: PortPlan) -> Vmknic:
    vmk = Vmknic(
        name=f.text("name", check=lambda v: bool(re.match(r"^vmk\d+$", v))),
        mac=f.text("mac", check=_is_mac),
        ipv4=f.text("ipv4", check=_is_ipv4),
        netmask=f.text("netmask", "255.255.255.0", check=_is_ipv4),
        gateway=f.opt_text("gateway", check=_is_ipv4),
        portgroup=f.text("portgroup"),
        dvport=f.opt_text("dvport"),
        mtu=f.number("mtu", 1500, lo=68, hi=9000),
        netstack=f.text("netstack", "defaultTcpipStack"),
        enabled=f.flag("enabled", True),
        port_index=f.opt_number("port_index", hi=0xFFFFFF),
    )
    f.done()
    plan.add_member(Member("vmknic", vmk.name, vmk.mac, vmk.portgroup, vmk.dvport, vmk.port_index, f.path))
    return vmk


def _vm(f: _Fields, default_world: int, plan: PortPlan) -> Vm:
    name = f.text("name")
    world_id = f.number("world_id", default_world, lo=1)
    running = f.flag("running", True)
    vnics = []
    for i, (p, item) in enumerate(f.items("vnics")):
        g = _Fields(item, p, f.source)
        vnic = VNic(
            index=i,
            mac=g.text("mac", check=_is_mac),
            ip=g.opt_text("ip", check=_is_ipv4),
            portgroup=g.text("portgroup"),
            adapter=g.text("adapter", "vmxnet3", check=lambda v: v in ADAPTER_SUBTYPE),
            dvport=g.opt_text("dvport"),
            filters=g.names("filters"),
            port_index=g.opt_number("port_index", hi=0xFFFFFF),
        )
        g.done()
        vnics.append(vnic)
        if not running:
            plan.require_portgroup(vnic.portgroup, vnic.dvport, p)
        else:
            client = f"{name}.eth{i}"
            plan.add_member(
                Member(
                    "vnic",
                    client,
                    vnic.mac,
                    vnic.portgroup,
                    vnic.dvport,
                    vnic.port_index,
                    p,
                    world_id=world_id,
                    vnic_index=i,
                    subtype=ADAPTER_SUBTYPE[vnic.adapter],
                )
            )
    f.done()
    return Vm(name, world_id, running, tuple(vnics))
