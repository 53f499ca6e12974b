"""Uploads against a local HTTP server on 127.0.0.1 that implements the Jira, ServiceNow and PUT
endpoints for real: multipart parsing, authentication, a size limit, failures on demand."""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import json
import random
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clirun import esxcap, isolated_env

from esxcap.errors import UsageError
from esxcap.pcap import Interface, PcapngWriter
from esxcap.sim import frames
from esxcap.ticket.upload import authorization, parse_destination, upload_files

USER, TOKEN = "admin", "s3cret"
BASIC = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
ENV = {
    "ESXCAP_JIRA_USER": USER,
    "ESXCAP_JIRA_TOKEN": TOKEN,
    "ESXCAP_SNOW_USER": USER,
    "ESXCAP_SNOW_PASSWORD": TOKEN,
    "ESXCAP_UPLOAD_TOKEN": TOKEN,
}
"""Credentials for every kind; env_for() binds them to a server."""


def env_for(where: str) -> dict[str, str]:
    """ENV with every credential bound to the server at `where` (HOST:PORT)."""
    urls = {f"ESXCAP_{kind}_URL": f"http://{where}" for kind in ("JIRA", "SNOW", "UPLOAD")}
    return {**ENV, **urls}


@dataclass
class Ticketing:
    """What the server holds and how it misbehaves."""

    max_bytes: int = 1 << 20
    fail_next: int = 0
    stored: dict[str, dict[str, bytes]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def handler(state: Ticketing) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def reply(self, status: int, doc: object) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self) -> bytes | None:
            length = int(self.headers.get("Content-Length", "0"))
            if length > state.max_bytes:
                self.reply(413, {"errorMessages": [f"attachment larger than {state.max_bytes} bytes"]})
                self.close_connection = True
                return None
            return self.rfile.read(length)

        def gate(self, expected: str) -> bool:
            state.requests.append(f"{self.command} {self.path}")
            if self.headers.get("Authorization") != expected:
                self.reply(401, {"errorMessages": ["authentication required"]})
                self.close_connection = True
                return False
            if state.fail_next:
                state.fail_next -= 1
                self.body()
                self.reply(503, {"message": "try again later"})
                return False
            return True

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if parts[:4] == ["rest", "api", "2", "issue"] and parts[5:] == ["attachments"]:
                if not self.gate(BASIC):
                    return
                if self.headers.get("X-Atlassian-Token") != "no-check":
                    self.reply(403, {"errorMessages": ["XSRF check failed"]})
                    return
                data = self.body()
                if data is None:
                    return
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + data)
                files = [
                    p
                    for p in message.iter_parts()
                    if p.get_param("name", header="content-disposition") == "file"
                ]
                if len(files) != 1:
                    self.reply(400, {"errorMessages": ["expected one multipart field 'file'"]})
                    return
                name = files[0].get_filename()
                state.stored.setdefault(parts[4], {})[name] = files[0].get_payload(decode=True)
                self.reply(200, [{"id": str(len(state.stored[parts[4]])), "filename": name}])
                return
            if url.path == "/api/now/attachment/file":
                if not self.gate(BASIC):
                    return
                query = dict(urllib.parse.parse_qsl(url.query))
                data = self.body()
                if data is None:
                    return
                key = f"{query['table_name']}/{query['table_sys_id']}"
                state.stored.setdefault(key, {})[query["file_name"]] = data
                self.reply(201, {"result": {"sys_id": f"att{len(state.stored[key])}"}})
                return
            self.reply(404, {"error": "no such endpoint"})

        def do_PUT(self) -> None:
            if not self.gate(f"Bearer {TOKEN}"):
                return
            data = self.body()
            if data is None:
                return
            state.stored.setdefault("put", {})[urllib.parse.unquote(self.path)] = data
            self.reply(201, {"stored": self.path})

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Ticketing]]:
    state = Ticketing()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "SR-1 bundle.zip"
    path.write_bytes(bytes(range(256)) * 300)
    return path


def progress_log() -> tuple[list[tuple[str, int, int]], object]:
    seen: list[tuple[str, int, int]] = []
    return seen, lambda name, sent, total: seen.append((name, sent, total))


def test_jira_attachment_is_a_real_multipart_upload(server, archive) -> None:
    where, state = server
    seen, progress = progress_log()
    [report] = upload_files(f"jira+http://{where}/OPS-7", [archive], progress, env_for(where), backoff_s=0)
    assert report.ok and report.attempts == 1 and report.message == "attachment 1 on OPS-7"
    assert state.stored["OPS-7"] == {archive.name: archive.read_bytes()}
    assert seen[-1][1] == seen[-1][2] and seen[-1][1] > archive.stat().st_size
    assert len(seen) <= 12


def test_servicenow_attachment(server, archive) -> None:
    where, state = server
    [report] = upload_files(
        f"servicenow+http://{where}/incident/abc123", [archive], lambda *a: None, env_for(where)
    )
    assert report.ok and report.message == "attachment att1 on incident abc123"
    assert state.stored["incident/abc123"] == {archive.name: archive.read_bytes()}
    assert state.requests[0].startswith(
        "POST /api/now/attachment/file?table_name=incident&table_sys_id=abc123"
    )


def test_put_to_a_directory_url_appends_the_file_name(server, archive) -> None:
    where, state = server
    [report] = upload_files(f"http://{where}/drop/", [archive], lambda *a: None, env_for(where))
    assert report.ok
    assert state.stored["put"] == {f"/drop/{archive.name}": archive.read_bytes()}


def test_failing_then_succeeding_upload_is_retried(server, archive) -> None:
    where, state = server
    state.fail_next = 2
    [report] = upload_files(
        f"jira+http://{where}/OPS-7", [archive], lambda *a: None, env_for(where), backoff_s=0.01
    )
    assert report.ok and report.attempts == 3
    assert len(state.requests) == 3 and state.stored["OPS-7"][archive.name] == archive.read_bytes()


def test_rejections_are_reported_with_the_servers_message(server, archive) -> None:
    where, state = server
    state.max_bytes = 1000
    [report] = upload_files(
        f"jira+http://{where}/OPS-7", [archive], lambda *a: None, env_for(where), backoff_s=0
    )
    assert not report.ok and report.status == 413 and report.attempts == 1
    assert "attachment larger than 1000 bytes" in report.message and "--split-size" in (report.hint or "")
    state.max_bytes = 1 << 20
    wrong = {**env_for(where), "ESXCAP_SNOW_PASSWORD": "nope"}
    [report] = upload_files(f"servicenow+http://{where}/incident/x", [archive], lambda *a: None, wrong)
    assert not report.ok and report.status == 401 and "authentication required" in report.message
    assert "incident/x" not in state.stored


def test_upload_stops_after_retries_run_out(server, archive) -> None:
    where, state = server
    state.fail_next = 10
    reports = upload_files(
        f"http://{where}/drop/", [archive, archive], lambda *a: None, env_for(where), retries=2, backoff_s=0
    )
    assert len(reports) == 1 and not reports[0].ok and reports[0].attempts == 3 and reports[0].status == 503


def test_destinations_and_credentials() -> None:
    jira = parse_destination("jira+https://jira.example.com:8443/OPS-7")
    assert (jira.kind, jira.host, jira.port, jira.ticket) == ("jira", "jira.example.com", 8443, "OPS-7")
    snow = parse_destination("servicenow+https://x.service-now.com/incident/abc")
    assert (snow.table, snow.ticket) == ("incident", "abc")
    for bad, why in (
        ("jira+http://jira.example.com/OPS-7", "plain http is refused"),
        ("jira+https://u:p@jira.example.com/OPS-7", "credentials do not go in the URL"),
        ("ftp://x/y", "not an upload URL"),
        ("servicenow+https://x/incident", "name a table and a record"),
    ):
        with pytest.raises(UsageError, match=why):
            parse_destination(bad)
    bound = {"ESXCAP_JIRA_URL": "https://jira.example.com:8443"}
    assert authorization(jira, {"ESXCAP_JIRA_TOKEN": "pat", **bound}) == "Bearer pat"
    assert authorization(jira, {**ENV, **bound}) == BASIC
    assert authorization(parse_destination("https://x/y"), {}) is None
    with pytest.raises(UsageError, match="no credentials") as missing:
        authorization(snow, {})
    assert "ESXCAP_SNOW_USER and ESXCAP_SNOW_PASSWORD" in (missing.value.hint or "")


def test_bundle_attach_uploads_every_part_through_the_cli(server, tmp_path: Path) -> None:
    where, state = server
    capture = tmp_path / "c.pcapng"
    noise = random.Random(1)  # payloads zip cannot shrink, so the archive needs several parts
    with capture.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("lab"))
        for i in range(200):
            payload = frames.udp("10.0.0.1", "10.0.0.2", 1000 + i, 9, noise.randbytes(200))
            frame = frames.ipv4(
                "00:50:56:00:00:01", "00:50:56:00:00:02", "10.0.0.1", "10.0.0.2", 17, payload, i
            )
            writer.write_packet(0, 1_700_000_000_000_000_000 + i * 1000, frame)
    env = isolated_env(tmp_path, PATH="/nonexistent", **env_for(where))  # no tshark: no analysis, quicker
    result = esxcap(
        "bundle", "--ticket", "OPS-7", str(capture), "-o", str(tmp_path / "b.zip"), "--split-size", "8k",
        "--attach", f"jira+http://{where}/OPS-7", env=env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    parts = sorted(tmp_path.glob("b.zip.0*"))
    assert len(parts) >= 2
    stored = state.stored["OPS-7"]
    assert set(stored) == {p.name for p in parts} | {"b.zip.parts.sha256"}
    assert all(stored[p.name] == p.read_bytes() for p in parts)
    assert "uploaded b.zip.001" in result.stdout and "100% of" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    again = esxcap("attach", str(parts[0]), f"jira+http://{where}/OPS-8", env=env)
    assert again.code == 0, again.stderr
    assert state.stored["OPS-8"] == stored
    whole = tmp_path / "w.zip"
    whole.write_bytes(b"an archive")
    assert esxcap("attach", str(whole), f"http://{where}/drop/", env=env).code == 0
    assert state.stored["put"] == {"/drop/w.zip": b"an archive"}
    denied = esxcap(
        "bundle", "--ticket", "OPS-7", str(capture), "-o", str(tmp_path / "d.zip"),
        "--attach", f"jira+http://{where}/OPS-7", env={**env, "ESXCAP_JIRA_TOKEN": "wrong"},
    )  # fmt: skip
    assert denied.code == 1 and "HTTP 401" in denied.stderr and "authentication required" in denied.stderr


SECRET = "Tok3n-9f2c-unique"


def test_secret_from_a_windows_file_is_stripped_and_one_with_a_break_inside_is_refused_unshown() -> None:
    jira = parse_destination("jira+https://jira.example.com/OPS-7")
    bound = {"ESXCAP_JIRA_URL": "https://jira.example.com"}
    assert authorization(jira, {"ESXCAP_JIRA_TOKEN": f"{SECRET}\r\n", **bound}) == f"Bearer {SECRET}"
    with pytest.raises(UsageError, match="ESXCAP_JIRA_TOKEN holds a control character") as broken:
        authorization(jira, {"ESXCAP_JIRA_TOKEN": f"{SECRET}\rx", **bound})
    assert "Tok3n" not in f"{broken.value.message} {broken.value.hint}"


def test_environment_credentials_go_only_to_the_server_they_are_bound_to(server, tmp_path: Path) -> None:
    where, state = server
    jira = parse_destination(f"jira+http://{where}/OPS-7")
    with pytest.raises(UsageError, match="does not say which server") as unbound:
        authorization(jira, {"ESXCAP_JIRA_TOKEN": SECRET})
    assert f"ESXCAP_JIRA_URL=http://{where}" in (unbound.value.hint or "")
    elsewhere = {"ESXCAP_JIRA_TOKEN": SECRET, "ESXCAP_JIRA_URL": "https://jira.example.com"}
    with pytest.raises(UsageError, match=r"refusing to send it to 127\.0\.0\.1"):
        authorization(jira, elsewhere)
    other_port = {**elsewhere, "ESXCAP_JIRA_URL": "http://127.0.0.1:1"}
    with pytest.raises(UsageError, match="refusing"):
        authorization(jira, other_port)
    # through the CLI: refused before the bundle is built, nothing sent, the token not shown
    capture = tmp_path / "c.pcapng"
    with capture.open("wb") as handle:
        writer = PcapngWriter(handle)
        writer.add_interface(Interface("lab"))
        writer.write_packet(0, 1_700_000_000_000_000_000, bytes(60))
    env = isolated_env(tmp_path, PATH="/nonexistent", **elsewhere)
    result = esxcap(
        "bundle", "--ticket", "OPS-7", str(capture), "-o", str(tmp_path / "b.zip"),
        "--attach", f"jira+http://{where}/OPS-7", env=env,
    )  # fmt: skip
    assert result.code == 2 and "refusing to send it to 127.0.0.1" in result.stderr
    assert not (tmp_path / "b.zip").exists() and state.requests == []
    assert SECRET not in result.stdout + result.stderr


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> Iterator[tuple[int, list[int]]]:
    """A TLS listener on 127.0.0.1 with a self-signed certificate; yields its port and a list that
    gets one entry per connection accepted."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    listener.close()
    thread.join(timeout=5)


def test_tls_verification_failure_is_reported_once_and_not_retried(untrusted_tls, archive) -> None:
    port, accepted = untrusted_tls
    [report] = upload_files(
        f"https://127.0.0.1:{port}/drop/", [archive], lambda *a: None, {}, retries=3, backoff_s=0
    )
    assert not report.ok and report.attempts == 1 and len(accepted) == 1
    assert "TLS certificate did not verify" in report.message and "SSL_CERT_FILE" in (report.hint or "")


def test_a_name_that_does_not_resolve_is_not_retried_and_messages_say_how_the_url_was_given(
    tmp_path: Path,
) -> None:
    """`-bad-.invalid` fails in the resolver itself (no DNS query leaves the machine)."""
    archive = tmp_path / "w.zip"
    archive.write_bytes(b"an archive")
    env = isolated_env(tmp_path)
    result = esxcap("attach", str(archive), "https://-bad-.invalid/drop/", env=env)
    assert result.code == 1 and "-bad-.invalid: the name does not resolve" in result.stderr
    assert "not tried again" in result.stderr and "in URL" in result.stderr
    assert "--attach" not in result.stderr
    bad = esxcap("attach", str(archive), "ftp://example.com/x", env=env)
    assert bad.code == 2 and "URL ftp://example.com/x: not an upload URL" in bad.stderr
    assert "--attach" not in bad.stderr
    [report] = upload_files(
        "https://-bad-.invalid/drop/", [archive], lambda *a: None, {}, retries=3, backoff_s=0
    )
    assert not report.ok and report.attempts == 1 and "in --attach" in (report.hint or "")
