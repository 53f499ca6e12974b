"""known_hosts as OpenSSH reads it, over both transports against a simulated host reached as `localhost`:
names, `[name]:port`, hashed entries, wildcards and negation, @revoked, @cert-authority host certificates,
ssh_config HostName, and the pure matcher underneath. Every case runs on asyncssh and paramiko and must
give the same answer."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh  # noqa: TID251 - the test plays the certificate authority that signs the host's key
import pytest
import yaml
from clirun import esxcap, isolated_env
from conftest import FAST_TOPOLOGY

from bench.sshd import OpenSshd, SshdUnavailable
from esxcap.errors import HostKeyError
from esxcap.inventory import HostConfig, load_inventory
from esxcap.sim import SimulatorThread, state, topology_from_data
from esxcap.ssh.transport.asyncssh_transport import AsyncsshTransport
from esxcap.ssh.transport.known_hosts import KnownHosts, Verdict, hashed_name, host_matches
from esxcap.ssh.transport.paramiko_transport import ParamikoTransport

TRANSPORTS = {"asyncssh": AsyncsshTransport, "paramiko": ParamikoTransport}
HOST = "esx-a"
ALIAS = "esx-alias"
RSA_HOST = "esx-b"
TOPOLOGY = {"hosts": {HOST: FAST_TOPOLOGY["hosts"]["new"], RSA_HOST: FAST_TOPOLOGY["hosts"]["mid"]}}
"""An 8.0 host whose ECDSA key is certified, and a 6.7 host whose RSA key is."""


def public(key: asyncssh.SSHKey) -> str:
    """`type base64` of a key."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


@dataclass(frozen=True)
class Keys:
    """The served host (its port and keys), the CA that signed its certificate, and keys it does not hold."""

    port: int
    ecdsa: str
    rsa: str
    rsa_host_key: str
    """The RSA key of RSA_HOST (certified there)."""
    ca: str
    other_ca: str
    foreign: str


@dataclass(frozen=True)
class Served:
    sim: SimulatorThread
    keys: Keys


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Hosts whose keys carry certificates for principal `localhost` (as sshd's HostCertificate)."""
    state_dir = tmp_path_factory.mktemp("certsim")
    ecdsa, rsa = state.host_keys(state_dir, HOST, legacy=False)
    _unused, rsa_host_key = state.host_keys(state_dir, RSA_HOST, legacy=False)
    ca = asyncssh.generate_private_key("ssh-ed25519")
    for host, key, kind in ((HOST, ecdsa, "ecdsa"), (RSA_HOST, rsa_host_key, "rsa")):
        cert = ca.generate_host_certificate(key, host, principals=["localhost"])
        cert.write_certificate(state_dir / "hostkeys" / host / f"ssh_host_{kind}_key-cert.pub")
    other_ca = asyncssh.generate_private_key("ssh-ed25519")
    foreign = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    with SimulatorThread(topology_from_data(TOPOLOGY, "<cert topology>"), state_dir) as running:
        port = running.sim.hosts[HOST].port
        keys = Keys(
            port,
            public(ecdsa),
            public(rsa),
            public(rsa_host_key),
            public(ca),
            public(other_ca),
            public(foreign),
        )
        yield Served(running, keys)


@dataclass(frozen=True)
class Case:
    """known_hosts lines (from the keys), how the host is named, and the answer both transports must give."""

    id: str
    lines: Callable[[Keys], list[str]]
    expect: str
    """"ok", or the refusal: "unknown", "changed", "revoked", "ca-revoked", "cert-invalid"."""
    hostname: str = "localhost"
    via_ssh_config: str | None = None
    """Name the host `esx-alias` in the inventory and let a test ssh_config say `HostName` this."""
    accept_new: bool = False
    records: bool = False
    """Whether --accept-new appends the host's key (as `[name]:port`)."""
    host: str = HOST


def named(pattern: str) -> Callable[[Keys], list[str]]:
    """One line listing the host's ECDSA key under `pattern` ({p} = the port)."""
    return lambda k: [f"{pattern.format(p=k.port)} {k.ecdsa}"]


def hashed(name: str) -> Callable[[Keys], list[str]]:
    return lambda k: [f"{hashed_name(name.format(p=k.port), os.urandom(20))} {k.ecdsa}"]


CASES = [
    Case("name", named("[localhost]:{p}"), "ok"),
    Case("name-case-insensitive", named("[LocalHost]:{p}"), "ok"),
    Case("name-in-list", named("esx99,[localhost]:{p},10.0.0.9"), "ok"),
    Case("ip-entry-for-ip", named("[127.0.0.1]:{p}"), "ok", hostname="127.0.0.1"),
    Case("ip-entry-does-not-vouch-for-name", named("[127.0.0.1]:{p}"), "unknown"),
    Case("port-22-form-does-not-match", named("localhost"), "unknown"),
    Case("hashed", hashed("[localhost]:{p}"), "ok"),
    Case("hashed-other-name", hashed("[esx99]:{p}"), "unknown"),
    Case("hashed-looked-up-in-lower-case", hashed("[localhost]:{p}"), "ok", hostname="LocalHost"),
    Case("wildcard-star", named("*"), "ok"),
    Case("wildcard-pattern", named("[local*]:*"), "ok"),
    Case("wildcard-question-mark", named("[localhos?]:{p}"), "ok"),
    Case("wildcard-no-match", named("[esx*]:*"), "unknown"),
    Case("negation-wins", named("*,![localhost]:{p}"), "unknown"),
    Case("negation-of-another", named("*,![esx99]:{p}"), "ok"),
    Case("changed", lambda k: [f"[localhost]:{k.port} {k.foreign}"], "changed"),
    Case("changed-not-replaced", lambda k: [f"[localhost]:{k.port} {k.foreign}"], "changed", accept_new=True),
    Case("other-key-type-listed", lambda k: [f"[localhost]:{k.port} {k.rsa}"], "ok"),
    Case(
        "revoked-beats-listed",
        lambda k: [f"[localhost]:{k.port} {k.ecdsa}", f"@revoked * {k.ecdsa}"],
        "revoked",
    ),
    Case("revoked-by-name", lambda k: [f"@revoked [localhost]:{k.port} {k.ecdsa}"], "revoked"),
    Case("revoked-never-recorded", lambda k: [f"@revoked * {k.ecdsa}"], "revoked", accept_new=True),
    Case("unknown-recorded", lambda k: [], "ok", accept_new=True, records=True),
    Case("recorded-in-lower-case", lambda k: [], "ok", hostname="LocalHost", accept_new=True, records=True),
    Case("unknown-refused", lambda k: [], "unknown"),
    Case("ssh-config-hostname", named("[localhost]:{p}"), "ok", via_ssh_config="localhost"),
    Case("ssh-config-alias-not-looked-up", named("[esx-alias]:{p}"), "unknown", via_ssh_config="localhost"),
    Case("ca", lambda k: [f"@cert-authority [localhost]:* {k.ca}"], "ok"),
    Case("ca-wildcard-and-hashed-lines", lambda k: [f"@cert-authority * {k.ca}", "garbage", "#x"], "ok"),
    Case("ca-for-other-names", lambda k: [f"@cert-authority [esx*]:* {k.ca}"], "unknown"),
    Case("ca-revoked", lambda k: [f"@cert-authority * {k.ca}", f"@revoked * {k.ca}"], "ca-revoked"),
    Case("ca-key-revoked", lambda k: [f"@cert-authority * {k.ca}", f"@revoked * {k.ecdsa}"], "revoked"),
    Case("ca-other-falls-back-to-key", lambda k: [f"@cert-authority * {k.other_ca}"], "unknown"),
    Case(
        "ca-other-falls-back-to-listed-key",
        lambda k: [f"@cert-authority * {k.other_ca}", f"[localhost]:{k.port} {k.ecdsa}"],
        "ok",
    ),
    Case(
        "ca-through-ssh-config-hostname",
        lambda k: [f"@cert-authority * {k.ca}"],
        "ok",
        via_ssh_config="localhost",
    ),
    Case("ca-rsa-certificate", lambda k: [f"@cert-authority * {k.ca}"], "ok", host=RSA_HOST),
    Case(
        "ca-rsa-certificate-key-revoked",
        lambda k: [f"@cert-authority * {k.ca}", f"@revoked * {k.rsa_host_key}"],
        "revoked",
        host=RSA_HOST,
    ),
    Case(
        "ca-principal-mismatch",
        lambda k: [f"@cert-authority * {k.ca}"],
        "cert-invalid",
        via_ssh_config="127.0.0.1",
    ),
]


def outcome(error: HostKeyError | None) -> str:
    if error is None:
        return "ok"
    text = str(error)
    for word, answer in (
        ("REVOKED HOST KEY", "revoked"),
        ("certificate authority that", "ca-revoked"),
        ("signed by a listed certificate authority", "cert-invalid"),
        ("HOST KEY CHANGED", "changed"),
        ("unknown host key", "unknown"),
    ):
        if word in text:
            return answer
    return text


def attempt(case: Case, text: str, served: Served, kind: str, tmp_path: Path) -> tuple[str, str]:
    """Connect as the case says with `text` in known_hosts; the outcome and the file afterwards."""
    known = tmp_path / f"known_hosts-{kind}"
    known.write_text(text)
    base = load_inventory(served.sim.sim.inventory_path).hosts[case.host]
    host = dataclasses.replace(
        base, hostname=ALIAS if case.via_ssh_config else case.hostname, known_hosts=known
    )
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {ALIAS}\n  HostName {case.via_ssh_config}\n" if case.via_ssh_config else "")

    async def go() -> None:
        transport = TRANSPORTS[kind](ssh_config=[config])
        conn = await transport.connect(host, password=lambda _p: None, accept_new=case.accept_new)
        try:
            assert (await conn.run(["hostname"], timeout=10)).exit_status == 0
        finally:
            await conn.close()

    try:
        asyncio.run(go())
    except HostKeyError as exc:
        return outcome(exc), known.read_text()
    return "ok", known.read_text()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_both_transports_give_openssh_answer(case: Case, served: Served, tmp_path: Path) -> None:
    before = "".join(line + "\n" for line in case.lines(served.keys))
    answers = {kind: attempt(case, before, served, kind, tmp_path) for kind in sorted(TRANSPORTS)}
    assert {kind: answer for kind, (answer, _text) in answers.items()} == dict.fromkeys(
        TRANSPORTS, case.expect
    )
    recorded = before + f"[localhost]:{served.keys.port} {served.keys.ecdsa}\n"
    for _answer, after in answers.values():
        assert after == (recorded if case.records else before)


def test_refusals_name_the_key_and_the_next_step(served: Served, tmp_path: Path) -> None:
    revoked = next(c for c in CASES if c.id == "revoked-never-recorded")
    for kind in sorted(TRANSPORTS):
        known = tmp_path / f"known_hosts-{kind}"
        base = load_inventory(served.sim.sim.inventory_path).hosts[HOST]
        known.write_text("".join(line + "\n" for line in revoked.lines(served.keys)))
        host: HostConfig = dataclasses.replace(base, hostname="localhost", known_hosts=known)

        async def go(kind: str = kind, host: HostConfig = host) -> None:
            await TRANSPORTS[kind](ssh_config=[]).connect(host, password=lambda _p: None, accept_new=True)

        with pytest.raises(HostKeyError) as info:
            asyncio.run(go())
        text = f"{info.value} {info.value.hint}"
        assert f"{HOST} (localhost:{served.keys.port})" in text
        assert "ecdsa-sha2-nistp256 SHA256:" in text and str(known) in text and "--accept-new" in text


# --- the matcher alone ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        ("esx01.corp.local", "esx01.corp.local", True),
        ("ESX01.corp.local", "esx01.CORP.local", True),
        ("*.corp.local", "esx01.corp.local", True),
        ("*.corp.local", "esx01.corp.local.evil", False),
        ("esx0?", "esx01", True),
        ("esx0?", "esx011", False),
        ("esx*,!esx02", "esx02", False),
        ("!esx02,esx*", "esx03", True),
        ("!esx02", "esx03", False),
        ("[esx01]:2222", "[esx01]:2222", True),
        ("[esx01]:2222", "esx01", False),
        ("[esx[01]]:22", "[esx[01]]:22", True),
        ("|1|broken", "esx01", False),
    ],
)
def test_host_patterns(patterns: str, name: str, expected: bool) -> None:
    assert host_matches(patterns, name) is expected


def test_hashed_entry_matches_only_its_name() -> None:
    entry = hashed_name("esx01.corp.local", b"0123456789abcdefghij")
    assert host_matches(entry, "esx01.corp.local")
    assert not host_matches(entry, "esx02.corp.local")


def test_unreadable_lines_are_skipped_not_fatal() -> None:
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIFbq8fyImUu2kcvOI4q5rWktwQ2GnS2yN3xBdVVvVoN2"
    text = "\n".join(
        [
            "# comment",
            "",
            "esx01 ssh-ed25519 not-base64!",
            "esx01 ssh-rsa " + key,  # the blob says ssh-ed25519
            "@unknown-marker esx01 ssh-ed25519 " + key,
            "esx01",
            "esx01 ssh-ed25519 " + key,
        ]
    )
    known = KnownHosts.from_text(text)
    assert [line.line_no for line in known.lines] == [7]
    assert known.keys("esx01")[0].key_type == "ssh-ed25519"
    assert known.check_key("esx02", known.lines[0].key_blob).verdict is Verdict.UNKNOWN


# --- OpenSSH's own host certificates ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certified_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpenSshd, str, str]]:
    """OpenSSH's sshd serving a host certificate made by ssh-keygen; with the CA's and the host's
    public keys (`type base64`)."""
    workdir = tmp_path_factory.mktemp("certsshd")
    ca = workdir / "host_ca"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True, capture_output=True
    )
    try:
        sshd = OpenSshd.start(workdir / "sshd", host_ca=ca)
    except SshdUnavailable as exc:
        pytest.skip(f"needs OpenSSH's sshd: {exc}")
    host_key = " ".join((workdir / "sshd" / "host_key.pub").read_text().split()[:2])
    yield sshd, " ".join(ca.with_suffix(".pub").read_text().split()[:2]), host_key
    sshd.stop()


@pytest.mark.parametrize(
    ("lines", "expect"),
    [
        (lambda ca, key: [f"@cert-authority [localhost]:* {ca}"], "ok"),
        (lambda ca, key: [f"@cert-authority * {ca}", f"@revoked * {key}"], "revoked"),
        (lambda ca, key: [f"@cert-authority * {ca}", f"@revoked * {ca}"], "ca-revoked"),
    ],
    ids=["accepted", "key-revoked", "ca-revoked"],
)
def test_openssh_host_certificate(
    lines: Callable[[str, str], list[str]],
    expect: str,
    certified_sshd: tuple[OpenSshd, str, str],
    tmp_path: Path,
) -> None:
    sshd, ca, key = certified_sshd
    known = tmp_path / "known_hosts"
    known.write_text("".join(line + "\n" for line in lines(ca, key)))
    host = HostConfig(
        name="certified",
        hostname="localhost",
        port=sshd.port,
        username=sshd.user,
        identity_file=sshd.client_key,
        known_hosts=known,
        explicit=frozenset({"hostname", "port", "username"}),
    )

    async def go(kind: str) -> str:
        try:
            conn = await TRANSPORTS[kind](ssh_config=[]).connect(
                host, password=lambda _p: None, accept_new=False
            )
        except HostKeyError as exc:
            return outcome(exc)
        try:
            assert (await conn.run(["true"], timeout=10)).exit_status == 0
        finally:
            await conn.close()
        return "ok"

    assert {kind: asyncio.run(go(kind)) for kind in sorted(TRANSPORTS)} == dict.fromkeys(TRANSPORTS, expect)


def test_cli_reaches_a_host_by_dns_name_with_a_hashed_known_hosts(served: Served, tmp_path: Path) -> None:
    """What a real inventory looks like: a DNS name and the hashed known_hosts Debian's ssh writes."""
    keys = served.keys
    known = served.sim.sim.state_dir / "hashed_known_hosts"
    known.write_text(f"{hashed_name(f'[localhost]:{keys.port}', os.urandom(20))} {keys.ecdsa}\n")
    data = yaml.safe_load(served.sim.sim.inventory_path.read_text(encoding="utf-8"))
    data["hosts"][HOST].update(hostname="localhost", known_hosts=known.name)
    inventory = served.sim.sim.state_dir / "dns-inventory.yaml"
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    inventory.chmod(0o600)
    for kind in sorted(TRANSPORTS):
        result = esxcap("-i", str(inventory), "discover", HOST, "--transport", kind, "--json",
                        env=isolated_env(tmp_path))  # fmt: skip
        assert result.code == 0, result.stderr
        assert result.json()["hosts"][0]["host"] == HOST
