"""`esxcap doctor HOST...`: the self-check an admin runs once against a real host, printed as a report
to paste into a bug (or `--json`), and remembered per ESXi build for captures to use."""

from __future__ import annotations

from typing import Any

from esxcap.cli import output
from esxcap.cli.common import (
    Connect,
    GroupOpt,
    HostOpt,
    HostsArg,
    JsonOpt,
    ParallelOpt,
    app,
    error_dicts,
    error_rows,
    exit_code,
    grouped,
    named_hosts,
    run_job,
    select_hosts,
)


@app.command()
@grouped
def doctor(
    connect: Connect,
    host: HostsArg = None,
    host_opt: HostOpt = None,
    group: GroupOpt = None,
    parallel: ParallelOpt = 10,
    json_out: JsonOpt = False,
) -> None:
    """Self-check hosts once: what esxcap cannot know from here, as a report to paste into a bug.

    Under two minutes, with short counted captures: SSH algorithms, account, shell timeouts, esxcli speed,
    BusyBox, /tmp space, clock precision, capture points, pcap on stdout, how INT and TERM stop pktcap-uw.
    Results are remembered per ESXi build in ~/.cache/esxcap/doctor for captures to use.
    """

    async def job() -> int:
        from esxcap.ssh.doctor import run_doctor
        from esxcap.ssh.host_memory import remember
        from esxcap.ssh.session import run_on_hosts

        hosts = select_hosts(named_hosts(host, host_opt), group)
        results = await run_on_hosts(hosts, connect.session(), run_doctor, parallel)
        reports: list[dict[str, Any]] = []
        for result in results:
            if result.value is None:
                continue
            kept = remember(result.value)
            reports.append(
                {
                    **result.value.as_dict(),
                    "seconds": round(result.seconds, 2),  # from the start of connecting: the login too
                    "remembered": str(kept) if kept else None,
                }
            )
        if json_out:
            output.print_json({"hosts": reports, "errors": error_dicts(results)})
        else:
            for report in reports:
                output.doctor_report(report, report["remembered"])
            output.host_errors(error_rows(results))
        return exit_code(results)

    run_job(job)
