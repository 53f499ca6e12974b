"""Inventory: precedence, paths, line-numbered errors, lookup order, ad-hoc hosts, selection, permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esxcap.errors import ConfigError
from esxcap.inventory import HostConfig, find_inventory, load_inventory

INVENTORY = """\
defaults:
  username: root
  port: 22
  known_hosts: keys/known_hosts
  password_env: ESXCAP_PASSWORD
groups:
  prod:
    port: 2222
    username: admin
  lab:
    port: 2200
    command_timeout: 5
hosts:
  esx01:
    hostname: 10.0.0.11
    groups: [prod, lab]
  esx02:
    groups: [lab, prod]
    identity_file: ~/.ssh/id_rsa
  esx03:
    hostname: esx03.example.com
    username: ops
    groups: [prod]
  bare:
"""


def write(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return load_inventory(write(tmp_path, INVENTORY))


def test_precedence_host_over_first_listed_group_over_defaults(inv) -> None:
    esx01, esx02, esx03 = inv.hosts["esx01"], inv.hosts["esx02"], inv.hosts["esx03"]
    assert (esx01.port, esx01.username, esx01.command_timeout) == (2222, "admin", 5.0)
    assert (esx02.port, esx02.username) == (2200, "admin")
    assert (esx03.port, esx03.username, esx03.command_timeout) == (2222, "ops", 60.0)
    assert esx01.groups == ("prod", "lab")
    assert esx01.password_env == "ESXCAP_PASSWORD"
    assert list(inv.hosts) == ["esx01", "esx02", "esx03", "bare"]


def test_hostname_defaults_to_name_and_explicit_tracks_inventory_values(inv) -> None:
    bare = inv.hosts["bare"]
    assert bare.hostname == "bare"
    assert "hostname" not in bare.explicit
    assert bare.explicit == {"username", "port", "known_hosts", "password_env"}
    assert "hostname" in inv.hosts["esx01"].explicit
    assert inv.hosts["esx01"].transport == "asyncssh"
    assert inv.hosts["esx01"].connect_timeout == 10.0


def test_built_in_defaults_are_not_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    inv = load_inventory(write(tmp_path, "hosts:\n  esx01: {hostname: 10.0.0.1}\n"))
    host = inv.hosts["esx01"]
    assert host.explicit == {"hostname"}
    assert (host.username, host.port, host.known_hosts) == ("root", 22, tmp_path / ".ssh" / "known_hosts")


def test_tilde_and_relative_paths(inv, tmp_path: Path) -> None:
    assert inv.hosts["esx01"].known_hosts == tmp_path / "keys" / "known_hosts"
    assert inv.hosts["esx02"].identity_file == tmp_path / "home" / ".ssh" / "id_rsa"
    assert inv.hosts["esx01"].identity_file is None


def test_relative_paths_follow_the_inventory_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    monkeypatch.chdir(tmp_path)
    inv = load_inventory(write(sub, "defaults: {identity_file: id_rsa}\nhosts: {a: {hostname: 1.2.3.4}}\n"))
    assert inv.hosts["a"].identity_file == sub / "id_rsa"


def test_describe_names_the_password_variable_only(inv) -> None:
    data = inv.hosts["esx01"].describe()
    assert data["password_env"] == "ESXCAP_PASSWORD"
    assert data["hostname"] == "10.0.0.11"
    assert data["groups"] == ["prod", "lab"]
    assert "password" not in data


ERRORS = [
    ("hosts:\n  esx01:\n    hostname: 1.2.3.4\n    prot: 22\n", 4, "hosts.esx01.prot", "did you mean 'port'"),
    ("hosts:\n  esx01:\n    port: 70000\n", 3, "hosts.esx01.port", "1-65535"),
    ("hosts:\n  esx01:\n    port: 0\n", 3, "hosts.esx01.port", "1-65535"),
    ("hosts:\n  esx01:\n    port: ssh\n", 3, "hosts.esx01.port", "e.g. 'port: 22'"),
    ("defaults:\n  port: true\n", 2, "defaults.port", "e.g. 'port: 22'"),
    ("groups: {prod: {}}\nhosts:\n  e1:\n    groups: [prod, dev]\n", 4, "hosts.e1.groups", "groups: prod"),
    ("hosts:\n  esx01:\n    groups: prod\n", 3, "hosts.esx01.groups", "[prod, lab]"),
    ("hosts: [esx01, esx02]\n", 1, "hosts", "indent the entries"),
    ("groups:\n  prod: 5\n", 2, "groups.prod", "indent the entries"),
    ("defaults:\n  username: root\n  password: secret\n", 3, "defaults.password", "password_env"),
    ("hosts:\n  esx01:\n    passwd: x\n", 3, "hosts.esx01.passwd", "password_env"),
    ("defaults:\n  password_env: hunter 2\n", 2, "defaults.password_env", "not the password"),
    ("defaults:\n  transport: telnet\n", 2, "defaults.transport", "asyncssh, paramiko"),
    ("defaults:\n  connect_timeout: -1\n", 2, "defaults.connect_timeout", "positive"),
    ("defaults:\n  hostname: 1.2.3.4\n", 2, "defaults.hostname", "allowed keys here"),
    ("groups:\n  prod:\n    groups: [x]\n", 3, "groups.prod.groups", "allowed keys here"),
    ("hots:\n  esx01: {}\n", 1, "hots", "did you mean 'hosts'"),
    ("hosts:\n  esx01: {}\n  esx01: {}\n", 3, "hosts.esx01", "remove one"),
    ("hosts:\n  esx01: {hostname: 1.2.3.4\n", 3, "YAML syntax error", "indentation"),
    ("hosts:\n  esx01:\n    hostname: [a\n", 4, "YAML syntax error", "quoting"),
    ("- a\n- b\n", 1, "the file", "indent the entries"),
    ("recipes:\n  web-db: vm-2-vm a b\n", 2, "recipes.web-db", "recipes: vm-to-vm, vmk, dvfilter, uplink"),
    ("recipes:\n  web-db: vm-to-vm a\n", 2, "recipes.web-db", "web-db: vm-to-vm VM_A VM_B"),
    ("recipes:\n  mgmt: [vmk, esx01, vmk0, extra]\n", 2, "recipes.mgmt", "vmk HOST VMK"),
    ("recipes:\n  bad: 5\n", 2, "recipes.bad", "vm-to-vm web01 db01"),
    ("recipes:\n  'a b': dvfilter web01\n", 2, "recipes.a b", "letters, digits"),
    ("recipes:\n  q: vm-to-vm 'web 01 db01\n", 2, "recipes.q", "cannot read"),
]


@pytest.mark.parametrize(("text", "line", "key", "hint"), ERRORS)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, hint: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert str(info.value).startswith(f"{path}:{line}: {key}")
    assert info.value.hint
    assert hint in f"{info.value} {info.value.hint}"


def test_password_key_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="passwords are not accepted in the inventory"):
        load_inventory(write(tmp_path, "hosts:\n  esx01:\n    password: x\n"))


def test_empty_file_and_empty_sections(tmp_path: Path) -> None:
    assert load_inventory(write(tmp_path, "")).hosts == {}
    inv = load_inventory(write(tmp_path, "defaults:\ngroups:\nhosts:\n  esx01:\n"))
    assert inv.hosts["esx01"].hostname == "esx01"


def test_yaml_merge_keys_work(tmp_path: Path) -> None:
    text = "x-common: &c {port: 2022}\nhosts:\n  a: {<<: *c, hostname: 1.1.1.1}\n"
    with pytest.raises(ConfigError, match="x-common"):
        load_inventory(write(tmp_path, text))
    text = "hosts:\n  a: &c {port: 2022, hostname: 1.1.1.1}\n  b: {<<: *c, hostname: 2.2.2.2}\n"
    inv = load_inventory(write(tmp_path, text))
    assert (inv.hosts["b"].port, inv.hosts["b"].hostname) == (2022, "2.2.2.2")


def test_find_inventory_order(tmp_path: Path) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    (home / ".config" / "esxcap").mkdir(parents=True)
    cwd.mkdir()
    assert find_inventory(None, {}, cwd, home) is None
    in_home = write(home / ".config" / "esxcap", "")
    assert find_inventory(None, {}, cwd, home) == in_home
    in_cwd = write(cwd, "")
    assert find_inventory(None, {}, cwd, home) == in_cwd
    from_env = write(tmp_path, "", "env.yaml")
    assert find_inventory(None, {"ESXCAP_INVENTORY": str(from_env)}, cwd, home) == from_env
    explicit = write(cwd, "", "mine.yaml")
    assert find_inventory(Path("mine.yaml"), {"ESXCAP_INVENTORY": str(from_env)}, cwd, home) == explicit


def test_find_inventory_missing_explicit_or_env_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"nope.yaml \(from -i\) does not exist"):
        find_inventory(Path("nope.yaml"), {}, tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"\$ESXCAP_INVENTORY"):
        find_inventory(None, {"ESXCAP_INVENTORY": str(tmp_path / "gone.yaml")}, tmp_path, tmp_path)


def test_no_inventory_still_allows_adhoc_hosts() -> None:
    inv = load_inventory(None)
    [host] = inv.select(["root@10.0.0.5"])
    assert (host.hostname, host.username, host.port) == ("10.0.0.5", "root", 22)


@pytest.mark.parametrize(
    ("spec", "hostname", "user", "port"),
    [
        ("10.0.0.5", "10.0.0.5", "root", 22),
        ("admin@10.0.0.5:2222", "10.0.0.5", "admin", 2222),
        ("esx9.example.com", "esx9.example.com", "root", 22),
        ("esx9:2022", "esx9", "root", 2022),
        ("ops@esx9", "esx9", "ops", 22),
        ("[::1]:2222", "::1", "root", 2222),
        ("root@[fe80::1%eth0]", "fe80::1%eth0", "root", 22),
        ("2001:db8::5", "2001:db8::5", "root", 22),
    ],
)
def test_adhoc_hosts(inv, spec: str, hostname: str, user: str, port: int) -> None:
    [host] = inv.select([spec])
    assert (host.name, host.hostname, host.username, host.port) == (spec, hostname, user, port)
    assert host.password_env == "ESXCAP_PASSWORD"
    assert host.groups == ()
    assert "hostname" in host.explicit


def test_adhoc_user_or_port_on_an_inventory_name_overrides_that_host(inv) -> None:
    [host] = inv.select(["ops@esx01"])
    assert (host.hostname, host.username, host.port) == ("10.0.0.11", "ops", 2222)
    assert host.groups == ("prod", "lab")


@pytest.mark.parametrize("spec", ["esx99", "a b", "root@", "[nothex]:22", "x@y@z", "10.0.0.1:99999"])
def test_unknown_names_are_refused_with_the_known_hosts(inv, spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        inv.select([spec])
    if spec in ("esx99", "a b", "root@", "x@y@z"):
        assert "hosts: esx01, esx02, esx03, bare" in str(info.value)
        assert info.value.hint is not None and "root@" in info.value.hint


def test_unknown_name_suggests_a_close_one(inv) -> None:
    with pytest.raises(ConfigError) as info:
        inv.select(["esx01x"])
    assert info.value.hint is not None and "did you mean 'esx01'" in info.value.hint


def test_select(inv) -> None:
    assert [h.name for h in inv.select([])] == ["esx01", "esx02", "esx03", "bare"]
    assert [h.name for h in inv.select([], "prod")] == ["esx01", "esx02", "esx03"]
    assert [h.name for h in inv.select([], "lab")] == ["esx01", "esx02"]
    assert [h.name for h in inv.select(["bare", "esx01"], "lab")] == ["esx01", "esx02", "bare"]
    assert [h.name for h in inv.select(["esx03", "esx03"])] == ["esx03"]
    with pytest.raises(ConfigError, match="unknown group 'dev'") as info:
        inv.select([], "dev")
    assert info.value.hint == "groups: prod, lab"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_permission_warning_is_for_readable_private_keys_not_the_inventory(tmp_path: Path) -> None:
    key = tmp_path / "id_ecdsa"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    path = write(tmp_path, "defaults: {identity_file: id_ecdsa}\nhosts: {a: {}, b: {hostname: 10.0.0.2}}\n")
    path.chmod(0o644)  # names hosts, users and paths; never a secret
    assert load_inventory(path).warnings == ()
    key.chmod(0o640)
    [warning] = load_inventory(path).warnings  # one warning for the key both hosts use
    assert f"private key {key}" in warning and "mode 0640" in warning
    assert f"chmod 600 {key}" in warning and str(path) in warning
    key.unlink()  # a missing key is reported when it is used, not here
    assert load_inventory(path).warnings == ()


def test_host_config_is_frozen() -> None:
    host = HostConfig(name="a", hostname="a")
    with pytest.raises(AttributeError):
        host.port = 23  # type: ignore[misc]


def test_saved_recipes_are_read_as_lines_or_lists(tmp_path: Path) -> None:
    text = "recipes:\n  web-db: vm-to-vm 'web 01' db01\n  mgmt: [vmk, esx01, vmk0]\n"
    recipes = load_inventory(write(tmp_path, text)).recipes
    assert [(r.name, r.kind, r.arguments) for r in recipes.values()] == [
        ("web-db", "vm-to-vm", ("web 01", "db01")),
        ("mgmt", "vmk", ("esx01", "vmk0")),
    ]
    assert recipes["web-db"].command == "vm-to-vm 'web 01' db01"


def test_the_example_inventory_loads_with_its_recipes() -> None:
    example = load_inventory(Path(__file__).resolve().parents[1] / "inventory.example.yaml")
    assert set(example.hosts) == {"esx01", "esx02", "esx-lab"}
    assert example.recipes["esx01-mgmt"].command == "vmk esx01 vmk0"


def test_keepalives_default_to_15_s_x_3_and_are_set_like_any_setting(tmp_path: Path) -> None:
    inventory = load_inventory(
        write(
            tmp_path,
            "defaults:\n  keepalive_interval: 5\nhosts:\n  a:\n  b:\n    keepalive_count: 6\n"
            "    keepalive_interval: 0.5\n",
        )
    )
    a, b = inventory.hosts["a"], inventory.hosts["b"]
    assert (a.keepalive_interval, a.keepalive_count) == (5.0, 3)
    assert (b.keepalive_interval, b.keepalive_count) == (0.5, 6)
    assert (HostConfig("c", "c").keepalive_interval, HostConfig("c", "c").keepalive_count) == (15.0, 3)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("keepalive_interval: 0", "keepalive_interval must be a positive number of seconds"),
        ("keepalive_interval: soon", "keepalive_interval must be a positive number of seconds"),
        ("keepalive_count: 0", "keepalive_count must be a whole number from 1"),
        ("keepalive_count: 2.5", "keepalive_count must be a whole number from 1"),
    ],
)
def test_bad_keepalive_settings_are_refused_with_an_example(
    tmp_path: Path, setting: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_inventory(write(tmp_path, f"hosts:\n  a:\n    {setting}\n"))
    assert "e.g. 'keepalive_" in (info.value.hint or "")
