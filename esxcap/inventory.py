"""The inventory: which ESXi hosts exist, how to reach them, and how the admin names them.

Reads a Nornir-like YAML file (`defaults`, `groups`, `hosts`) into frozen `HostConfig`s with precedence
host > groups (first listed wins) > defaults, and turns `[user@]address[:port]` on the command line into
ad-hoc hosts. `recipes:` names saved recipe runs (`web-db: vm-to-vm web01 db01`), each shown in Wireshark
as its own extcap interface. Every mistake in the file is a `ConfigError` naming file, line and key. Apart
from reading the file (and the permission bits of the private keys it names) nothing here does I/O.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from esxcap.errors import ConfigError

SETTING_KEYS = (
    "username",
    "port",
    "known_hosts",
    "identity_file",
    "password_env",
    "transport",
    "connect_timeout",
    "command_timeout",
    "proxy_jump",
    "keepalive_interval",
    "keepalive_count",
)
HOST_ONLY_KEYS = ("hostname", "groups")
VCENTER_KEYS = (
    "address",
    "port",
    "username",
    "password_env",
    "ca_bundle",
    "fingerprint",
    "connect_timeout",
    "ssh_start_timeout",
)
TRANSPORTS = ("asyncssh", "paramiko")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
INVENTORY_ENV = "ESXCAP_INVENTORY"

RECIPE_ARGUMENTS = {
    "vm-to-vm": ("VM_A", "VM_B"),
    "vmk": ("HOST", "VMK"),
    "dvfilter": ("VM",),
    "uplink": ("HOST", "VMNIC"),
}
"""Recipe kind -> the arguments a saved recipe gives it, as `esxcap recipe KIND ...` takes them."""
_RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\Z")
_ADHOC = re.compile(
    r"(?:(?P<user>[^@\s\[\]:]+)@)?(?:\[(?P<v6>[^\]\s]+)\]|(?P<host>[^@\s\[\]:]+))(?::(?P<port>\d+))?\Z"
)


@dataclass(frozen=True)
class HostConfig:
    """How to reach one host. `explicit` names the fields the inventory (or the ad-hoc spec) set, so that
    ~/.ssh/config may fill in the others."""

    name: str
    hostname: str
    port: int = 22
    username: str = "root"
    known_hosts: Path | None = field(default_factory=lambda: Path(DEFAULT_KNOWN_HOSTS).expanduser())
    identity_file: Path | None = None
    password_env: str | None = None
    groups: tuple[str, ...] = ()
    transport: str = "asyncssh"
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    proxy_jump: str | None = None
    keepalive_interval: float = 15.0
    """Seconds between SSH keepalives; a host that leaves `keepalive_count` of them unanswered is gone."""
    keepalive_count: int = 3
    explicit: frozenset[str] = frozenset()

    def describe(self) -> dict[str, Any]:
        """Plain data for `esxcap hosts` (no secret is ever stored here; only the variable's name)."""
        return {
            "name": self.name,
            "hostname": self.hostname,
            "port": self.port,
            "username": self.username,
            "groups": list(self.groups),
            "transport": self.transport,
            "known_hosts": str(self.known_hosts) if self.known_hosts else None,
            "identity_file": str(self.identity_file) if self.identity_file else None,
            "password_env": self.password_env,
            "proxy_jump": self.proxy_jump,
            "connect_timeout": self.connect_timeout,
            "command_timeout": self.command_timeout,
            "keepalive_interval": self.keepalive_interval,
            "keepalive_count": self.keepalive_count,
            "from_inventory": sorted(self.explicit),
        }


@dataclass(frozen=True)
class VcenterConfig:
    """How to reach the vCenter that knows where VMs run: its address, account (the password comes from
    `password_env`, the keyring or a prompt) and how its certificate is trusted (a CA bundle, or a
    pinned SHA-256 fingerprint; else esxcap's own record of certificates accepted with --accept-new)."""

    address: str
    port: int = 443
    username: str = "administrator@vsphere.local"
    password_env: str | None = None
    ca_bundle: Path | None = None
    fingerprint: str | None = None
    connect_timeout: float = 30.0
    ssh_start_timeout: float = 60.0
    """How long --enable-ssh waits for the port to answer after vCenter reports SSH started."""


@dataclass(frozen=True)
class SavedRecipe:
    """A `recipes:` entry: a name and the recipe it runs (`vm-to-vm web01 db01`)."""

    name: str
    kind: str
    arguments: tuple[str, ...]

    @property
    def command(self) -> str:
        return shlex.join((self.kind, *self.arguments))


@dataclass(frozen=True)
class Inventory:
    """The hosts of one inventory file (or none: then only ad-hoc hosts exist), and its vCenter."""

    hosts: Mapping[str, HostConfig]
    path: Path | None
    groups: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    recipes: Mapping[str, SavedRecipe] = field(default_factory=dict)
    vcenter: VcenterConfig | None = None

    def with_vcenter_hosts(self, hosts: Sequence[tuple[str, str | None]]) -> Inventory:
        """This inventory plus the hosts vCenter knows, as (name, cluster): a host listed here keeps its
        own settings, others get the defaults; each cluster becomes a group of its hosts."""
        merged = dict(self.hosts)
        for name, cluster in hosts:
            groups = (cluster,) if cluster else ()
            base = merged.get(name)
            if base is None:
                merged[name] = _make_host(name, name, self.defaults, groups, frozenset(self.defaults))
            elif cluster and cluster not in base.groups:
                merged[name] = replace(base, groups=(*base.groups, cluster))
        clusters = tuple(dict.fromkeys(c for _n, c in hosts if c))
        return replace(self, hosts=merged, groups=tuple(dict.fromkeys((*self.groups, *clusters))))

    def select(self, names: Sequence[str], group: str | None = None) -> list[HostConfig]:
        """Hosts named on the command line and/or members of `group`; all hosts when neither is given."""
        if not names and group is None:
            return list(self.hosts.values())
        chosen: dict[str, HostConfig] = {}
        if group is not None:
            if group not in self.groups:
                raise ConfigError(
                    f"unknown group '{group}'{self._where()}",
                    f"groups: {', '.join(self.groups) or '(none defined)'}",
                )
            chosen.update((h.name, h) for h in self.hosts.values() if group in h.groups)
        for name in names:
            host = self.hosts.get(name) or self.adhoc(name)
            chosen.setdefault(host.name, host)
        return list(chosen.values())

    def adhoc(self, spec: str) -> HostConfig:
        """`[user@]address[:port]` (IPv6 as `[::1]:22` or bare) -> a HostConfig with the defaults applied.

        `user@esx01` / `esx01:2222` with an inventory name override that host's user or port.
        """
        m = _ADHOC.match(spec)
        bare_v6 = _is_ip(spec) and ":" in spec
        if bare_v6:
            user, address, port_text = None, spec, None
        elif m:
            user, address, port_text = m["user"], m["v6"] or m["host"], m["port"]
        else:
            raise self._unknown_host(spec)
        if m and m["v6"] and not _is_ip(address):
            raise ConfigError(
                f"'{spec}': '[{address}]' is not an IPv6 address", "write it as [2001:db8::1]:22"
            )
        overrides: dict[str, Any] = {}
        if user:
            overrides["username"] = user
        if port_text is not None:
            port = int(port_text)
            if not 1 <= port <= 65535:
                raise ConfigError(f"'{spec}': port {port} is not in 1-65535", "the SSH port is usually 22")
            overrides["port"] = port
        base = self.hosts.get(address)
        if base is not None and not bare_v6 and not (m and m["v6"]):
            return replace(base, name=spec, explicit=base.explicit | frozenset(overrides), **overrides)
        looks_like_address = bool(overrides) or _is_ip(address) or "." in address
        if not looks_like_address or not (_is_ip(address) or _HOSTNAME.match(address)):
            raise self._unknown_host(spec)
        settings = {**self.defaults, **overrides}
        return _make_host(spec, address, settings, groups=(), explicit=frozenset(settings) | {"hostname"})

    def _unknown_host(self, spec: str) -> ConfigError:
        known = ", ".join(self.hosts) or "(none)"
        close = difflib.get_close_matches(spec, list(self.hosts), n=1)
        maybe = f"did you mean '{close[0]}'? " if close else ""
        return ConfigError(
            f"unknown host '{spec}'{self._where()}; hosts: {known}",
            f"{maybe}a host outside the inventory is given as an address: "
            f"root@{spec}, {spec}:22, 10.0.0.11 or [2001:db8::1]:22",
        )

    def _where(self) -> str:
        return f" in {self.path}" if self.path else " (no inventory file)"


def find_inventory(explicit: Path | None, env: Mapping[str, str], cwd: Path, home: Path) -> Path | None:
    """`-i FILE`, then $ESXCAP_INVENTORY, then ./inventory.yaml, then ~/.config/esxcap/inventory.yaml."""
    for given, origin in (
        (explicit, "-i"),
        (Path(env[INVENTORY_ENV]) if env.get(INVENTORY_ENV) else None, f"${INVENTORY_ENV}"),
    ):
        if given is not None:
            path = given.expanduser()
            path = path if path.is_absolute() else cwd / path
            if path.is_dir():
                inside = path / "inventory.yaml"
                raise ConfigError(
                    f"inventory {path} (from {origin}) is a folder, not an inventory file",
                    f"give the YAML file itself{f', e.g. {inside}' if inside.is_file() else ''}",
                )
            if not path.is_file():
                raise ConfigError(
                    f"inventory {path} (from {origin}) does not exist",
                    "check the path, or drop it to use ./inventory.yaml or ~/.config/esxcap/inventory.yaml",
                )
            return path
    for candidate in (cwd / "inventory.yaml", home / ".config" / "esxcap" / "inventory.yaml"):
        if candidate.is_file():
            return candidate
    return None


def load_inventory(path: Path | None) -> Inventory:
    """Read and check the inventory file; None gives an empty inventory (ad-hoc hosts still work)."""
    if path is None:
        return Inventory(hosts={}, path=None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read inventory {path}: {exc}", "check the file's path and permissions"
        ) from exc
    inventory = parse_inventory(text, path)
    return replace(inventory, warnings=tuple(permission_warnings(inventory)))


def permission_warnings(inventory: Inventory) -> list[str]:
    """A warning for every private key (identity_file) that others than its owner may read.

    The inventory file itself holds no secret (password keys are refused; `password_env` names a
    variable), so a world-readable inventory is fine; a readable private key is not (OpenSSH refuses it).
    """
    if os.name != "posix":
        return []
    warnings = []
    keys = dict.fromkeys(h.identity_file for h in inventory.hosts.values() if h.identity_file is not None)
    for key in keys:
        try:
            mode = stat.S_IMODE(key.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            warnings.append(
                f"private key {key} (identity_file in {inventory.path}) is accessible by group/others "
                f"(mode {mode:04o}); run: chmod 600 {key}"
            )
    return warnings


def parse_inventory(text: str, path: Path) -> Inventory:
    """Parse inventory YAML; relative paths in it are resolved against `path`'s folder."""
    reader = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(
            f"{path}:{line}: YAML syntax error: {exc.problem}",
            "check indentation and quoting near that line (values with ':' or '#' need quotes)",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}", "check the file's syntax") from exc
    top = {
        key: value
        for key, (_k, value) in reader.mapping(
            root, "the file", allowed=("defaults", "groups", "hosts", "vcenter", "recipes")
        ).items()
    }
    vcenter = _vcenter(reader, top["vcenter"]) if "vcenter" in top else None
    defaults = reader.settings(top.get("defaults"), "defaults", allowed=SETTING_KEYS)
    groups_node = reader.mapping(top.get("groups"), "groups")
    groups = {
        name: reader.settings(node, f"groups.{name}", allowed=SETTING_KEYS)
        for name, node in reader.named(groups_node)
    }
    hosts: dict[str, HostConfig] = {}
    for name, node in reader.named(reader.mapping(top.get("hosts"), "hosts")):
        own = reader.settings(node, f"hosts.{name}", allowed=SETTING_KEYS + HOST_ONLY_KEYS)
        member_of = own.pop("groups", ())
        for group_name in member_of:
            if group_name not in groups:
                raise reader.error(
                    reader.value_node(node, "groups"),
                    f"hosts.{name}.groups",
                    f"unknown group '{group_name}'",
                    f"groups: {', '.join(groups) or '(none defined)'}",
                )
        settings = dict(defaults)
        for group_name in reversed(member_of):
            settings.update(groups[group_name])
        settings.update(own)
        hostname = settings.pop("hostname", None)
        explicit = frozenset(settings) | ({"hostname"} if hostname else set())
        hosts[name] = _make_host(name, hostname or name, settings, tuple(member_of), explicit)
    recipes = {
        name: reader.recipe(name, node)
        for name, node in reader.named(reader.mapping(top.get("recipes"), "recipes"))
    }
    return Inventory(
        hosts=hosts, path=path, groups=tuple(groups), defaults=defaults, vcenter=vcenter, recipes=recipes
    )


def _vcenter(reader: _Reader, node: yaml.Node) -> VcenterConfig:
    settings = reader.settings(node, "vcenter", allowed=VCENTER_KEYS)
    if "address" not in settings:
        raise reader.error(node, "vcenter", "no address", "e.g. 'vcenter: {address: vcsa.corp.local}'")
    fingerprint = settings.get("fingerprint")
    if fingerprint is not None:
        settings["fingerprint"] = normalize_fingerprint(fingerprint)
        if settings["fingerprint"] is None:
            raise reader.error(
                reader.value_node(node, "fingerprint"),
                "vcenter.fingerprint",
                f"'{fingerprint}' is not a SHA-256 fingerprint",
                "e.g. 'fingerprint: SHA256:AB:CD:...' (64 hex digits, as esxcap prints it)",
            )
    return VcenterConfig(**settings)


_FINGERPRINT = re.compile(r"(?:sha256:)?((?:[0-9a-f]{2}:?){32})\Z")


def normalize_fingerprint(text: str) -> str | None:
    """`SHA256:AB:CD:...`, `ab:cd:...` or 64 hex digits -> `SHA256:AB:CD:...` (None when not one)."""
    m = _FINGERPRINT.match(text.strip().lower())
    if not m:
        return None
    digits = m.group(1).replace(":", "")
    return "SHA256:" + ":".join(digits[i : i + 2] for i in range(0, 64, 2)).upper()


class _Reader:
    """Walks composed YAML nodes so that every error can name its file, line and key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node | None, key: str, problem: str, hint: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else 1
        return ConfigError(f"{self.path}:{line}: {key}: {problem}", hint)

    def mapping(
        self, node: yaml.Node | None, where: str, allowed: Sequence[str] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """key -> (key node, value node); null is an empty mapping."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.error(
                node,
                where,
                f"must be a mapping of 'key: value' lines, not {_kind(node)}",
                "indent the entries under it: 'hosts:' then '  esx01: {hostname: 10.0.0.11}'",
            )
        own_keys: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                key = self._constructor.construct_object(key_node, deep=True)
                if key in own_keys:
                    raise self.error(
                        key_node,
                        f"{where}.{key}".removeprefix("the file."),
                        "appears twice",
                        "remove one of the entries",
                    )
                own_keys.add(key)
        self._constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor); own keys come last and win
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self._constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str) or not key:
                raise self.error(
                    key_node,
                    f"{where} key {key!r}",
                    "names must be text",
                    "quote the name, e.g. '\"1.2\": ...'",
                )
            label = key if where == "the file" else f"{where}.{key}"
            if allowed is not None and key not in allowed:
                secret = "pass" in key.lower() or "secret" in key.lower()
                problem = "passwords are not accepted in the inventory" if secret else f"unknown key '{key}'"
                raise self.error(key_node, label, problem, _key_hint(key, allowed))
            result[key] = (key_node, value_node)
        return result

    @staticmethod
    def named(entries: Mapping[str, tuple[yaml.Node, yaml.Node]]) -> list[tuple[str, yaml.Node]]:
        return [(name, value) for name, (_key, value) in entries.items()]

    def value_node(self, node: yaml.Node, key: str) -> yaml.Node | None:
        entry = self.mapping(node, "").get(key)
        return entry[1] if entry else None

    def settings(self, node: yaml.Node | None, where: str, allowed: Sequence[str]) -> dict[str, Any]:
        """Checked and converted settings of one section (defaults, a group or a host)."""
        result: dict[str, Any] = {}
        for key, (_key_node, value_node) in self.mapping(node, where, allowed=allowed).items():
            value = self._constructor.construct_object(value_node, deep=True)
            result[key] = self._check(key, value, value_node, f"{where}.{key}")
        return result

    def recipe(self, name: str, node: yaml.Node) -> SavedRecipe:
        """One `recipes:` entry: `NAME: KIND ARG...` as one line or a list."""
        value = self._constructor.construct_object(node, deep=True)
        example = "e.g. 'web-db: vm-to-vm web01 db01'"
        if not _RECIPE_NAME.match(name):
            raise self.error(
                node, f"recipes.{name}", "a recipe name is letters, digits, '.', '_' or '-'", example
            )
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise self.error(node, f"recipes.{name}", f"cannot read {value!r}: {exc}", example) from exc
        elif isinstance(value, list) and all(isinstance(word, str) for word in value):
            words = value
        else:
            raise self.error(node, f"recipes.{name}", f"must be a recipe line, not {value!r}", example)
        kind, *arguments = words or [""]
        if kind not in RECIPE_ARGUMENTS:
            raise self.error(
                node, f"recipes.{name}", f"unknown recipe '{kind}'", f"recipes: {', '.join(RECIPE_ARGUMENTS)}"
            )
        wanted = RECIPE_ARGUMENTS[kind]
        if len(arguments) != len(wanted) or not all(a.strip() for a in arguments):
            raise self.error(
                node,
                f"recipes.{name}",
                f"{kind} takes {' '.join(wanted)}, not {shlex.join(arguments) or 'nothing'}",
                f"e.g. '{name}: {kind} {' '.join(wanted)}'",
            )
        return SavedRecipe(name, kind, tuple(arguments))

    def _check(self, key: str, value: Any, node: yaml.Node, label: str) -> Any:
        def bad(problem: str, hint: str) -> ConfigError:
            return self.error(node, label, problem, hint)

        if key == "port":
            if not isinstance(value, int) or isinstance(value, bool):
                raise bad(f"port must be a number, not {value!r}", "e.g. 'port: 22'")
            if not 1 <= value <= 65535:
                raise bad(f"port {value} is not in 1-65535", "the SSH port is usually 22")
            return value
        if key == "keepalive_count":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(
                    f"keepalive_count must be a whole number from 1, not {value!r}",
                    "e.g. 'keepalive_count: 3'",
                )
            return value
        if key in ("connect_timeout", "command_timeout", "ssh_start_timeout", "keepalive_interval"):
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise bad(f"{key} must be a positive number of seconds, not {value!r}", f"e.g. '{key}: 30'")
            return float(value)
        if key == "groups":
            if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
                raise bad(
                    f"groups must be a list of group names, not {value!r}", "e.g. 'groups: [prod, lab]'"
                )
            return tuple(value)
        if not isinstance(value, str) or not value.strip():
            raise bad(f"{key} must be non-empty text, not {value!r}", f"e.g. '{key}: {_EXAMPLES[key]}'")
        if key in ("known_hosts", "identity_file", "ca_bundle"):
            expanded = Path(value).expanduser()
            return expanded if expanded.is_absolute() else (self.path.parent / expanded).resolve()
        if key == "password_env" and not _ENV_NAME.match(value):
            raise bad(
                f"'{value}' is not an environment variable name",
                "give the variable's name, not the password: 'password_env: ESXCAP_PASSWORD'",
            )
        if key == "transport" and value not in TRANSPORTS:
            raise bad(f"unknown transport '{value}'", f"transports: {', '.join(TRANSPORTS)}")
        if key == "hostname" and any(c.isspace() for c in value):
            raise bad(f"hostname {value!r} contains spaces", "give an address or DNS name")
        return value


_EXAMPLES = {
    "username": "root",
    "known_hosts": DEFAULT_KNOWN_HOSTS,
    "identity_file": "~/.ssh/id_rsa",
    "password_env": "ESXCAP_PASSWORD",
    "transport": "asyncssh",
    "proxy_jump": "admin@jumphost",
    "hostname": "10.0.0.11",
    "address": "vcsa.corp.local",
    "ca_bundle": "~/vcenter-ca.pem",
    "fingerprint": "SHA256:AB:CD:...",
}


def _key_hint(key: str, allowed: Sequence[str]) -> str:
    if "pass" in key.lower() or "secret" in key.lower():
        return (
            "passwords are never stored in the inventory: set 'password_env: VARIABLE' and export the "
            "password in that variable, or let esxcap prompt for it"
        )
    close = difflib.get_close_matches(key, list(allowed), n=1)
    maybe = f"did you mean '{close[0]}'? " if close else ""
    return f"{maybe}allowed keys here: {', '.join(allowed)}"


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"the value {node.value!r}" if isinstance(node, yaml.ScalarNode) else "this"


def _make_host(
    name: str, hostname: str, settings: Mapping[str, Any], groups: tuple[str, ...], explicit: frozenset[str]
) -> HostConfig:
    values = {k: v for k, v in settings.items() if k in SETTING_KEYS}
    return HostConfig(name=name, hostname=hostname, groups=groups, explicit=explicit, **values)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True
