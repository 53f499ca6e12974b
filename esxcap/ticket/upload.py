"""Attaching bundle files to a ticket over HTTPS: Jira, ServiceNow, or a plain PUT, with progress,
retries with backoff, and a report per file. Standard library only (http.client).

URLs:
- `jira+https://HOST[:PORT]/ISSUE-KEY` -> `POST /rest/api/2/issue/{key}/attachments`, multipart field
  `file`, header `X-Atlassian-Token: no-check`; credentials ESXCAP_JIRA_USER + ESXCAP_JIRA_TOKEN (Basic),
  or ESXCAP_JIRA_TOKEN alone (Bearer, a personal access token);
- `servicenow+https://HOST[:PORT]/TABLE/SYS_ID` -> `POST /api/now/attachment/file?table_name=TABLE&
  table_sys_id=SYS_ID&file_name=NAME`, the file as the body; ESXCAP_SNOW_USER + ESXCAP_SNOW_PASSWORD;
- `https://HOST/PATH/` (or `.../NAME`) -> `PUT` of the file to that URL (a trailing slash appends the file
  name); ESXCAP_UPLOAD_TOKEN (Bearer) when set, else no credentials (pre-signed URLs).
Credentials from the environment are bound to one server: ESXCAP_JIRA_URL, ESXCAP_SNOW_URL or
ESXCAP_UPLOAD_URL names it (`https://HOST[:PORT]`), and they are sent nowhere else. Without the
variables, the OS keyring is asked when the `keyring` package is installed (service `esxcap`, user
`jira:HOST`, `servicenow:HOST` or `upload:HOST`, secret `USER:TOKEN` or `TOKEN`), so bound to HOST by
its entry. Surrounding white space (a Windows line ending) is stripped from a secret; one holding a
control character is refused, naming the variable and never showing the value. Credentials never come
from the URL or argv. Plain `http` is refused except to a loopback address. A server whose TLS
certificate does not verify is not tried again.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import os
import secrets
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from esxcap.errors import UsageError

Progress = Callable[[str, int, int], None]
RETRIES = 4
BACKOFF_S = 1.0
TIMEOUT_S = 60.0
_CHUNK = 256 * 1024
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Destination:
    kind: str  # jira, servicenow or put
    scheme: str
    host: str
    port: int | None
    path: str
    shown: str
    """The URL as shown in reports (never with credentials)."""
    ticket: str | None = None
    table: str | None = None
    given_as: str = "--attach"
    """How the user gave the URL (`--attach`, or `attach`'s URL argument), for messages."""


@dataclass(frozen=True)
class UploadReport:
    file: str
    target: str
    ok: bool
    status: int | None
    attempts: int
    message: str
    hint: str | None = None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_destination(url: str, given_as: str = "--attach") -> Destination:
    """Check an upload URL (given as `given_as`: --attach, or `attach`'s URL) and say where and how
    files go."""
    kind, plus, rest = url.partition("+")
    if not plus:
        kind, rest = "put", url
    parts = urllib.parse.urlsplit(rest)
    hint = "use jira+https://HOST/ISSUE-KEY, servicenow+https://HOST/TABLE/SYS_ID or https://HOST/PATH"
    if (
        kind not in ("jira", "servicenow", "put")
        or parts.scheme not in ("https", "http")
        or not parts.hostname
    ):
        raise UsageError(f"{given_as} {url}: not an upload URL", hint)
    if parts.username or parts.password:
        raise UsageError(
            f"{given_as}: credentials do not go in the URL",
            "set them in environment variables (see the README)",
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise UsageError(f"{given_as} {url}: plain http is refused for {parts.hostname}", "use https://")
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]
    shown = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    base = Destination(
        kind,
        parts.scheme,
        parts.hostname,
        parts.port,
        parts.path or "/",
        f"{kind}:{shown}",
        given_as=given_as,
    )
    if kind == "jira":
        if len(segments) != 1:
            raise UsageError(
                f"{given_as} {url}: name one Jira issue", "e.g. jira+https://jira.example.com/OPS-123"
            )
        return replace(base, ticket=segments[0])
    if kind == "servicenow":
        if len(segments) != 2:
            raise UsageError(
                f"{given_as} {url}: name a table and a record",
                "e.g. servicenow+https://example.service-now.com/incident/SYS_ID",
            )
        return replace(base, table=segments[0], ticket=segments[1])
    return base


def _from_keyring(account: str) -> str | None:
    try:
        import keyring
    except ImportError:
        return None
    try:
        secret = keyring.get_password("esxcap", account)
    except Exception:  # any keyring backend failure means: no stored secret
        return None
    return secret if isinstance(secret, str) else None


_CREDENTIALS = {
    "jira": ("ESXCAP_JIRA_URL", "ESXCAP_JIRA_USER", "ESXCAP_JIRA_TOKEN"),
    "servicenow": ("ESXCAP_SNOW_URL", "ESXCAP_SNOW_USER", "ESXCAP_SNOW_PASSWORD"),
    "put": ("ESXCAP_UPLOAD_URL", None, "ESXCAP_UPLOAD_TOKEN"),
}
"""Per destination kind: the variable naming the server the credentials are for, the user, the secret."""


def _clean(name: str, value: str) -> str:
    """A credential without surrounding white space; one with a control character inside is refused
    (the message names the variable, never the value)."""
    value = value.strip()
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UsageError(
            f"{name} holds a control character (a line break or similar) inside the value",
            f"set {name} again from a clean copy (e.g. a token file saved with Unix line endings)",
        )
    return value


def _check_bound(dest: Destination, env: Mapping[str, str]) -> None:
    """Environment credentials go only to the server their ESXCAP_*_URL variable names."""
    url_name, _user, secret_name = _CREDENTIALS[dest.kind]
    configured = env.get(url_name, "").strip()
    example = f"{url_name}={dest.scheme}://{dest.host}" + (f":{dest.port}" if dest.port else "")
    if not configured:
        raise UsageError(
            f"{secret_name} is set but {url_name} does not say which server it is for",
            f"set {example} to send it to {dest.host}",
        )
    parts = urllib.parse.urlsplit(configured if "://" in configured else f"https://{configured}")
    default_port = 443 if dest.scheme == "https" else 80
    same = (parts.hostname or "").lower() == dest.host.lower() and (parts.port or default_port) == (
        dest.port or default_port
    )
    if not same:
        raise UsageError(
            f"{secret_name} is for {parts.hostname}{f':{parts.port}' if parts.port else ''} ({url_name}); "
            f"refusing to send it to {dest.host}{f':{dest.port}' if dest.port else ''}",
            f"attach to the server in {url_name}, or set {example} if this server should get it",
        )


def authorization(dest: Destination, env: Mapping[str, str]) -> str | None:
    """The Authorization header value for a destination, from the environment (bound to its server)
    or the keyring (bound to the host by its entry's name)."""
    url_name, user_name, secret_name = _CREDENTIALS[dest.kind]
    user = _clean(user_name, env[user_name]) if user_name and env.get(user_name) else None
    secret = _clean(secret_name, env[secret_name]) if env.get(secret_name) else None
    if secret is not None:
        _check_bound(dest, env)
    else:
        account = f"{dest.kind}:{dest.host}"
        stored = _from_keyring(account)
        stored = _clean(f"the keyring entry {account}", stored) if stored is not None else None
        if stored is not None and ":" in stored and dest.kind != "put":
            user, _, secret = stored.partition(":")
        else:
            secret = stored
    if secret is None:
        if dest.kind == "put":
            return None
        raise UsageError(
            f"no credentials for {dest.shown}",
            f"set {user_name} and {secret_name} with {url_name}={dest.scheme}://{dest.host} (or store them "
            f"with keyring: service esxcap, user {dest.kind}:{dest.host}, secret USER:TOKEN)",
        )
    if user:
        return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
    return f"Bearer {secret}"


@dataclass(frozen=True)
class UploadTarget:
    """A checked --attach URL with its credentials, ready before anything is built or sent."""

    dest: Destination
    auth: str | None = field(repr=False)


def upload_target(url: str, env: Mapping[str, str] | None = None, given_as: str = "--attach") -> UploadTarget:
    """Check an upload URL and find its credentials (UsageError when either is wrong)."""
    dest = parse_destination(url, given_as)
    return UploadTarget(dest, authorization(dest, os.environ if env is None else env))


def _request(dest: Destination, file: Path) -> tuple[str, str, dict[str, str], bytes, bytes]:
    """(method, path, headers, body head, body tail): the file's bytes go between head and tail."""
    name = file.name
    if dest.kind == "jira":
        boundary = "esxcap-" + secrets.token_hex(12)
        quoted = name.replace('"', "%22")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        headers = {
            "X-Atlassian-Token": "no-check",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        path = f"/rest/api/2/issue/{urllib.parse.quote(dest.ticket or '')}/attachments"
        return "POST", path, headers, head, f"\r\n--{boundary}--\r\n".encode()
    if dest.kind == "servicenow":
        query = urllib.parse.urlencode(
            {"table_name": dest.table, "table_sys_id": dest.ticket, "file_name": name}
        )
        headers = {"Content-Type": "application/octet-stream"}
        return "POST", f"/api/now/attachment/file?{query}", headers, b"", b""
    path = dest.path + urllib.parse.quote(name) if dest.path.endswith("/") else dest.path
    return "PUT", path, {"Content-Type": "application/octet-stream"}, b"", b""


def _body(file: Path, head: bytes, tail: bytes, progress: Progress) -> Iterator[bytes]:
    total = len(head) + file.stat().st_size + len(tail)
    sent, shown = 0, -1
    for block in (head, None, tail):
        chunks: Iterator[bytes] = iter((block,)) if block is not None else _file_chunks(file)
        for chunk in chunks:
            if not chunk:
                continue
            yield chunk
            sent += len(chunk)
            if sent * 10 // total > shown:
                shown = sent * 10 // total
                progress(file.name, sent, total)


def _file_chunks(file: Path) -> Iterator[bytes]:
    with file.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _summary(dest: Destination, status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:300] or f"HTTP {status}"
    if dest.kind == "jira" and isinstance(doc, list) and doc and isinstance(doc[0], dict):
        return f"attachment {doc[0].get('id')} on {dest.ticket}"
    if dest.kind == "servicenow" and isinstance(doc, dict) and isinstance(doc.get("result"), dict):
        return f"attachment {doc['result'].get('sys_id')} on {dest.table} {dest.ticket}"
    if isinstance(doc, dict):
        messages = doc.get("errorMessages") or doc.get("error") or doc.get("message")
        if messages:
            return json.dumps(messages, ensure_ascii=False)[:300]
    return json.dumps(doc, ensure_ascii=False)[:300]


def _not_worth_retrying(exc: Exception, dest: Destination) -> tuple[str, str]:
    """What failed and the next step when another try cannot help: a certificate that does not verify,
    a server name that does not resolve (UnicodeError: one IDNA cannot even encode)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the server's TLS certificate did not verify: {exc.verify_message or exc.reason or exc}",
            "if the server uses a private CA, point SSL_CERT_FILE at its certificate",
        )
    return (
        f"{dest.host}: the name does not resolve ({getattr(exc, 'strerror', None) or exc})",
        f"check the server name in {dest.given_as} and this machine's DNS",
    )


def upload_file(
    dest: Destination,
    file: Path,
    auth: str | None,
    progress: Progress,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
) -> UploadReport:
    """Send one file; retry connection failures and 408/429/5xx with exponential backoff."""
    method, path, headers, head, tail = _request(dest, file)
    headers = {**headers, "Content-Length": str(len(head) + file.stat().st_size + len(tail))}
    headers["Accept"] = "application/json"
    if auth:
        headers["Authorization"] = auth
    attempt, message, status = 0, "", None
    while attempt <= retries:
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        attempt += 1
        conn_class = http.client.HTTPSConnection if dest.scheme == "https" else http.client.HTTPConnection
        conn = conn_class(dest.host, dest.port, timeout=TIMEOUT_S)
        try:
            # a server refusing the body (413) answers and closes before reading it all
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request(method, path, body=_body(file, head, tail, progress), headers=headers)
            response = conn.getresponse()
            status, body = response.status, response.read()
        except (ssl.SSLCertVerificationError, socket.gaierror, UnicodeError) as exc:
            message, hint = _not_worth_retrying(exc, dest)
            return UploadReport(
                file.name, dest.shown, False, None, attempt, message, f"not tried again; {hint}"
            )
        except (OSError, http.client.HTTPException) as exc:
            status, message = None, f"connection failed: {exc}"
            continue
        finally:
            conn.close()
        message = _summary(dest, status, body)
        if 200 <= status < 300:
            return UploadReport(file.name, dest.shown, True, status, attempt, message)
        if status not in _RETRY_STATUS:
            break
        message = f"HTTP {status}: {message}"
    if status is not None and not message.startswith("HTTP"):
        message = f"HTTP {status}: {message}"
    hint = {
        401: "check the credentials in the environment variables",
        403: "the account may not attach files to this ticket",
        404: "check the ticket in the URL",
        413: "the server refused the size; bundle again with --split-size",
    }.get(status or 0, "see the server's message")
    return UploadReport(file.name, dest.shown, False, status, attempt, message, hint)


def upload_files(
    target: UploadTarget | str,
    files: Sequence[Path],
    progress: Progress,
    env: Mapping[str, str] | None = None,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
) -> list[UploadReport]:
    """Upload every file to the --attach target (or URL), in order; stop at the first file that fails."""
    if isinstance(target, str):
        target = upload_target(target, env)
    reports = []
    for file in files:
        report = upload_file(target.dest, file, target.auth, progress, retries, backoff_s)
        reports.append(report)
        if not report.ok:
            break
    return reports
