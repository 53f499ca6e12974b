"""The vCenter connection, and the only module that imports pyVmomi.

Trust is as strict as for SSH host keys: the certificate is verified against a CA bundle, or its
SHA-256 fingerprint must equal the one pinned in the inventory or recorded earlier with --accept-new
(in ~/.config/esxcap/known_vcenters); an unknown certificate is refused with its fingerprint and the
command that trusts it, a changed one always. The session itself is pinned to that fingerprint, so the
certificate checked is the one spoken to.

Reading is one PropertyCollector query per question: every VM's host, power state and network adapters
(with the hosts' names in the same answer); every host with its cluster. Changing is limited to starting
and stopping a host's SSH service (`TSM-SSH`); lockdown mode is read, never changed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from esxcap.errors import ConfigError, HostError
from esxcap.inventory import VcenterConfig, normalize_fingerprint
from esxcap.vcenter.estate import VcHost, VcNic, VcVm

SSH_SERVICE = "TSM-SSH"
KNOWN_VCENTERS = Path("~/.config/esxcap/known_vcenters")
PasswordPrompt = Callable[[str], str | None]


def known_vcenters_path() -> Path:
    return KNOWN_VCENTERS.expanduser()


def fingerprint_of(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def server_fingerprint(config: VcenterConfig) -> str:
    """The SHA-256 fingerprint of the certificate vCenter presents (read without trusting it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((config.address, config.port), timeout=config.connect_timeout) as raw,
            context.wrap_socket(raw, server_hostname=config.address) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise HostError(
            f"vCenter {config.address}:{config.port} does not answer: {exc}",
            "check the address and port in the inventory's vcenter block, and that this machine reaches it",
        ) from exc
    if not der:
        raise HostError(f"vCenter {config.address} presented no certificate", "check the address")
    return fingerprint_of(der)


def _known(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}", "check its permissions") from exc
    known: dict[str, str] = {}
    for line in lines:
        where, _, value = line.strip().partition(" ")
        fingerprint = normalize_fingerprint(value)
        if where and fingerprint:
            known[where] = fingerprint
    return known


def check_trust(config: VcenterConfig, presented: str, accept_new: bool, known_path: Path) -> str | None:
    """Whether vCenter's certificate may be trusted: the fingerprint to pin the session to (None when a
    CA bundle verifies it instead); records a new one when `accept_new`."""
    if config.ca_bundle is not None:
        return None
    where = f"{config.address}:{config.port}"
    expected = config.fingerprint or _known(known_path).get(where)
    if expected == presented:
        return presented
    if expected is not None:
        origin = "pinned in the inventory" if config.fingerprint else f"recorded in {known_path}"
        raise HostError(
            f"vCenter {where} presented certificate {presented}, not the one {origin} ({expected})",
            "if vCenter's certificate was replaced on purpose, check the new fingerprint and update "
            f"{'the inventory' if config.fingerprint else known_path}; otherwise do not connect",
        )
    if not accept_new:
        raise HostError(
            f"vCenter {where}'s certificate is not known: {presented}",
            "check that fingerprint against vCenter's, then trust it: esxcap hosts --vcenter --accept-new "
            "(or pin it in the inventory: fingerprint: ...)",
        )
    known_path.parent.mkdir(parents=True, exist_ok=True)
    with known_path.open("a", encoding="utf-8") as handle:
        handle.write(f"{where} {presented}\n")
    os.chmod(known_path, 0o600)
    return presented


def _password(config: VcenterConfig, prompt: PasswordPrompt) -> str:
    if config.password_env:
        value = os.environ.get(config.password_env)
        if value:
            return value
    try:
        import keyring

        stored = keyring.get_password(f"esxcap-vcenter:{config.address}", config.username)
    except Exception:  # no keyring, or a keyring without a backend: ask instead
        stored = None
    if stored:
        return str(stored)
    asked = prompt(f"{config.username}@{config.address} (vCenter) password: ")
    if asked is None:
        variable = config.password_env or "ESXCAP_VCENTER_PASSWORD"
        raise ConfigError(
            f"no password for vCenter {config.address}",
            f"set password_env: {variable} in the vcenter block and export it, or run from a terminal",
        )
    return asked


class Vcenter:
    """An open vCenter session."""

    def __init__(self, config: VcenterConfig, service_instance: Any) -> None:
        self.config = config
        self._si = service_instance
        self._content = service_instance.RetrieveContent()
        self._hosts: dict[str, Any] = {}

    @classmethod
    def connect(cls, config: VcenterConfig, prompt: PasswordPrompt, accept_new: bool) -> Vcenter:
        try:
            from pyVim.connect import SmartConnect
            from pyVmomi import vim
        except ImportError as exc:
            raise ConfigError(
                "the inventory names a vCenter, and talking to it needs pyVmomi",
                "install it: pip install 'esxcap[vcenter]'",
            ) from exc

        pinned = check_trust(config, server_fingerprint(config), accept_new, known_vcenters_path())
        if pinned is None:
            context = ssl.create_default_context(cafile=str(config.ca_bundle))
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        password = _password(config, prompt)
        try:
            si = SmartConnect(
                host=config.address,
                port=config.port,
                user=config.username,
                pwd=password,
                sslContext=context,
                thumbprint=pinned.removeprefix("SHA256:").replace(":", "") if pinned else None,
                connectionPoolTimeout=int(config.connect_timeout),
            )
        except vim.fault.InvalidLogin as exc:
            raise HostError(
                f"vCenter {config.address} refused {config.username}'s password",
                "check the user and the password (password_env in the vcenter block)",
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raise HostError(
                f"cannot open a session with vCenter {config.address}: {exc}", "check the address"
            ) from exc
        return cls(config, si)

    def close(self) -> None:
        from pyVim.connect import Disconnect

        Disconnect(self._si)

    def _query(self, types: list[Any], properties: dict[Any, list[str]]) -> list[tuple[Any, dict[str, Any]]]:
        """One PropertyCollector round trip over a container view of `types` from the root folder."""
        from pyVmomi import vim, vmodl

        collector = vmodl.query.PropertyCollector
        view = self._content.viewManager.CreateContainerView(self._content.rootFolder, types, True)
        try:
            spec = collector.FilterSpec(
                objectSet=[
                    collector.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[
                            collector.TraversalSpec(
                                name="view", path="view", skip=False, type=vim.view.ContainerView
                            )
                        ],
                    )
                ],
                propSet=[
                    collector.PropertySpec(type=kind, pathSet=paths) for kind, paths in properties.items()
                ],
            )
            found = self._content.propertyCollector.RetrieveContents([spec])
        finally:
            view.Destroy()
        return [(item.obj, {p.name: p.val for p in item.propSet}) for item in found]

    def vms(self) -> list[VcVm]:
        """Every VM with its host, power state and network adapters, in one query."""
        from pyVmomi import vim

        items = self._query(
            [vim.VirtualMachine, vim.HostSystem],
            {
                vim.VirtualMachine: ["name", "runtime.host", "runtime.powerState", "config.hardware.device"],
                vim.HostSystem: ["name"],
            },
        )
        host_names = {obj._moId: props["name"] for obj, props in items if isinstance(obj, vim.HostSystem)}
        self._hosts.update({props["name"]: obj for obj, props in items if isinstance(obj, vim.HostSystem)})
        result = []
        for obj, props in items:
            if not isinstance(obj, vim.VirtualMachine):
                continue
            host = props.get("runtime.host")
            result.append(
                VcVm(
                    name=str(props.get("name", "")),
                    host=host_names.get(host._moId) if host is not None else None,
                    power_state=str(props.get("runtime.powerState", "unknown")),
                    nics=tuple(_nic(d) for d in props.get("config.hardware.device") or () if _is_nic(d)),
                )
            )
        return result

    def hosts(self) -> list[VcHost]:
        """Every host vCenter manages, with its cluster (None for a standalone host), in one query."""
        from pyVmomi import vim

        items = self._query(
            [vim.HostSystem, vim.ClusterComputeResource],
            {
                vim.HostSystem: ["name", "parent", "runtime.connectionState"],
                vim.ClusterComputeResource: ["name"],
            },
        )
        clusters = {
            obj._moId: props["name"] for obj, props in items if isinstance(obj, vim.ClusterComputeResource)
        }
        result = []
        for obj, props in items:
            if isinstance(obj, vim.HostSystem):
                self._hosts[props["name"]] = obj
                parent = props.get("parent")
                cluster = clusters.get(parent._moId) if parent is not None else None
                result.append(VcHost(props["name"], cluster, str(props.get("runtime.connectionState", ""))))
        return sorted(result, key=lambda h: h.name)

    def _host(self, name: str) -> Any:
        if name not in self._hosts:
            self.hosts()
        if name not in self._hosts:
            raise HostError(
                f"vCenter {self.config.address} manages no host named {name}",
                "esxcap hosts --vcenter lists them",
            )
        return self._hosts[name]

    def ssh_running(self, host: str) -> bool:
        services = self._host(host).config.service.service
        return any(s.key == SSH_SERVICE and s.running for s in services)

    def start_ssh(self, host: str) -> None:
        self._host(host).configManager.serviceSystem.StartService(id=SSH_SERVICE)

    def stop_ssh(self, host: str) -> None:
        self._host(host).configManager.serviceSystem.StopService(id=SSH_SERVICE)

    def lockdown(self, host: str) -> tuple[str, tuple[str, ...]]:
        """The host's lockdown mode and, when it is on, the users it lets in (exception users)."""
        system = self._host(host)
        mode = str(system.config.lockdownMode or "lockdownDisabled")
        if mode == "lockdownDisabled":
            return mode, ()
        return mode, tuple(system.configManager.hostAccessManager.QueryLockdownExceptions())


def _is_nic(device: Any) -> bool:
    from pyVmomi import vim

    return isinstance(device, vim.vm.device.VirtualEthernetCard)


def _nic(device: Any) -> VcNic:
    from pyVmomi import vim

    backing = device.backing
    label = str(device.deviceInfo.label) if device.deviceInfo else ""
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        port = backing.port
        return VcNic(label, str(device.macAddress), f"dvportgroup {port.portgroupKey}", port.portKey)
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo):
        return VcNic(label, str(device.macAddress), f"opaque network {backing.opaqueNetworkId}")
    return VcNic(label, str(device.macAddress), str(getattr(backing, "deviceName", "") or ""))
