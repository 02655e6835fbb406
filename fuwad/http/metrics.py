"""GET /metrics: the queue in Prometheus' text format.

Open to the addresses in ``[http] metrics_allow`` (single addresses or
networks such as ``10.0.0.0/8``; loopback by default) and to any caller
with a valid API token.  Every number comes from the database, so any
``fuwad http`` process answers for the whole cluster.  The processed and
failed totals add up the counters of the workers alive now: they fall when
a worker exits, which Prometheus' ``rate()`` reads as a counter reset.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from fuwad import queries
from fuwad.http.auth import AUTHENTICATOR
from fuwad.http.common import MANAGER
from fuwad.states import JobStatus, WorkerState

log = logging.getLogger("fuwad.http.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# [http] metrics_allow, parsed once when the app is built.
ALLOW = web.AppKey("fuwad_metrics_allow", list[Network])


def parse_allow(text: str) -> list[Network]:
    """Return the networks of ``[http] metrics_allow``; skip bad entries
    with a warning."""
    networks: list[Network] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            log.warning("metrics_allow entry ignored value=%.60r", item)
    return networks


def allowed(address: str | None, networks: list[Network]) -> bool:
    """Tell whether ``address`` lies in one of ``networks``."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def _label(value: object) -> str:
    text = str(value)
    return (text.replace("\\", "\\\\").replace("\n", "\\n")
            .replace('"', '\\"'))


def _family(lines: list[str], name: str, kind: str, about: str) -> None:
    lines.append(f"# HELP {name} {about}")
    lines.append(f"# TYPE {name} {kind}")


async def render(request: web.Request) -> str:
    """Return the metrics text."""
    pool = request.app[MANAGER].pool
    jobs = await pool.fetch(queries.JOBS_BY_STATUS_QUEUE)
    workers = await pool.fetch(queries.WORKERS_BY_STATE)
    ready, oldest = await request.app[MANAGER].ready()
    lines: list[str] = []

    _family(lines, "fuwad_jobs", "gauge", "Jobs by status and queue.")
    seen = {row["status"] for row in jobs}
    for row in jobs:
        lines.append(f'fuwad_jobs{{status="{_label(row["status"])}",'
                     f'queue="{_label(row["queue"])}"}} {row["count"]}')
    for status in JobStatus:  # every status shows, even at zero
        if status.value not in seen:
            lines.append(f'fuwad_jobs{{status="{status.value}",'
                         f'queue="default"}} 0')

    _family(lines, "fuwad_jobs_ready", "gauge",
            "Pending jobs due now, waiting for a worker.")
    lines.append(f"fuwad_jobs_ready {ready}")
    _family(lines, "fuwad_oldest_ready_job_age_seconds", "gauge",
            "How long the oldest ready job has waited.")
    lines.append(f"fuwad_oldest_ready_job_age_seconds {max(0.0, oldest):.3f}")

    _family(lines, "fuwad_workers", "gauge", "Live workers by state.")
    by_state = {row["state"]: row for row in workers}
    for state in sorted({s.value for s in WorkerState} | set(by_state)):
        count = by_state[state]["count"] if state in by_state else 0
        lines.append(f'fuwad_workers{{state="{_label(state)}"}} {count}')

    done = sum(int(row["jobs_done"] or 0) for row in workers)
    failed = sum(int(row["jobs_failed"] or 0) for row in workers)
    _family(lines, "fuwad_jobs_processed_total", "counter",
            "Jobs completed by the workers alive now.")
    lines.append(f"fuwad_jobs_processed_total {done}")
    _family(lines, "fuwad_jobs_failed_total", "counter",
            "Failed attempts by the workers alive now.")
    lines.append(f"fuwad_jobs_failed_total {failed}")
    return "\n".join(lines) + "\n"


async def metrics(request: web.Request) -> web.Response:
    """Serve the metrics to an allowed address or a token holder."""
    if not allowed(request.remote, request.app[ALLOW]):
        await request.app[AUTHENTICATOR].authenticate(request)
    return web.Response(text=await render(request),
                        headers={"Content-Type": CONTENT_TYPE})
