"""A narrow stand-in for the vCenter calls vcsim does not simulate (a host's SSH service, its lockdown
exceptions), for an esxcap CLI run in a subprocess: every call is written to a control folder, where the
test's `ServiceDesk` thread answers it by starting or stopping the simulated host's SSH server, so the
port really opens when SSH is "started". Everything else (where VMs run, hosts, clusters, the
certificate, the session) is vcsim's.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from esxcap.sim import SimulatorThread

LOG = "calls.log"
STATE = "state.json"


def run_cli(control: str, args: list[str]) -> None:
    """In the subprocess: route the service calls to the control folder, then run esxcap."""
    from esxcap.cli.main import main
    from esxcap.vcenter import client

    folder = Path(control)

    def state() -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((folder / STATE).read_text())
        return loaded

    def call(verb: str, host: str) -> None:
        with (folder / LOG).open("a") as log:
            log.write(f"{verb} {host}\n")
        if verb == "start" and state().get("start_fails"):
            raise RuntimeError("NoPermission: Host.Config.NetService")
        request = folder / f"{host}.{verb}"
        request.write_text("")
        deadline = time.monotonic() + 30
        while request.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    client.Vcenter.ssh_running = lambda self, host: host in state()["running"]  # type: ignore[method-assign]
    client.Vcenter.start_ssh = lambda self, host: call("start", host)  # type: ignore[method-assign]
    client.Vcenter.stop_ssh = lambda self, host: call("stop", host)  # type: ignore[method-assign]
    client.Vcenter.lockdown = lambda self, host: tuple(
        state()["lockdown"].get(host, ["lockdownDisabled", []])
    )  # type: ignore[method-assign]
    sys.argv = ["esxcap", *args]
    main()


class ServiceDesk:
    """The test side: answers start/stop requests on the simulator; `calls` lists them in order."""

    def __init__(self, folder: Path, sim: SimulatorThread, running: set[str]) -> None:
        self.folder = folder
        self.sim = sim
        self.settings: dict[str, Any] = {"running": sorted(running), "lockdown": {}, "start_fails": False}
        self.start_opens_port = True
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ServiceDesk:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def update(self, **settings: Any) -> None:
        self.settings.update(settings)
        self._write()

    @property
    def calls(self) -> list[str]:
        log = self.folder / LOG
        return log.read_text().splitlines() if log.exists() else []

    def _write(self) -> None:
        (self.folder / STATE).write_text(json.dumps(self.settings))

    def _serve(self) -> None:
        while not self._stop.is_set():
            for request in sorted(self.folder.glob("*.start")) + sorted(self.folder.glob("*.stop")):
                host, verb = request.stem, request.suffix[1:]
                running = set(self.settings["running"])
                if verb == "start":
                    running.add(host)
                    if self.start_opens_port:
                        self.sim.call(self.sim.sim.start_host(host))
                else:
                    running.discard(host)
                    self.sim.call(self.sim.sim.stop_host(host))
                self.update(running=sorted(running))
                request.unlink()
            time.sleep(0.05)
