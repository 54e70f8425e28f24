"""`conveyor up`: migrate, start a worker process, serve the API in this one."""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys

import uvicorn

from conveyor.api.app import create_app
from conveyor.core.errors import ConfigurationError
from conveyor.loading import load_app
from conveyor.store import make_engine
from conveyor.store.probe import check_database
from conveyor.store.schema import upgrade
from conveyor.worker.supervisor import die_with_parent

log = logging.getLogger("conveyor.up")


def check_port(host: str, port: int) -> None:
    """Fail before anything is announced or enqueued when ``host:port`` cannot be served
    (bound as uvicorn binds it, with SO_REUSEADDR, then let go)."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise ConfigurationError(
            f"port {port} on {host} {why}: stop what serves it or choose another with --port"
        ) from None


def run_up(app_spec: str, host: str, port: int, concurrency: int, demo: bool) -> int:
    check_port(host, port)
    app = load_app(app_spec)
    settings = app.settings
    check_database(settings.database_url, existing=False, tables=False)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    argv = [sys.executable, "-m", "conveyor", "worker", "--app", app_spec,
            "--concurrency", str(concurrency), "--with-scheduler"]  # fmt: skip
    worker = subprocess.Popen(argv, preexec_fn=die_with_parent)
    base = f"http://{host}:{port}"
    dispatch = "Redis" if settings.redis_url else "the database"
    print(f"Conveyor is up — dashboard: {base}/ui", flush=True)
    print(f"  database   {settings.database_url}, dispatch through {dispatch}")
    print(f"  API docs   {base}/docs\n  jobs       {base}/jobs\n  queues     {base}/queues")
    if demo:
        from conveyor.demo import enqueue_examples

        for job_type, job_id in enqueue_examples():
            print(f"  {job_type:<15} {base}/ui/jobs/{job_id}   (live: {base}/jobs/{job_id}/events)")
    sys.stdout.flush()
    try:
        uvicorn.run(create_app(app), host=host, port=port, log_level="warning")
    finally:
        worker.terminate()
        try:
            worker.wait(35)
        except subprocess.TimeoutExpired:
            worker.kill()
    return 0
