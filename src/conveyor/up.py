"""`conveyor up`: migrate, start a worker process, serve the API in this one."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import subprocess
import sys
from types import FrameType

import uvicorn

from conveyor.api.app import create_app
from conveyor.core.errors import ConfigurationError
from conveyor.core.logs import logging_config, resolve_format
from conveyor.loading import load_app
from conveyor.store.probe import prepare_database
from conveyor.worker.supervisor import die_with_parent

log = logging.getLogger("conveyor.up")

#: How long past the worker's grace period ``up`` waits for it: its final writes.
STOP_MARGIN_S = 10.0


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
    prepare_database(settings.database_url)  # one statement when the schema is current
    argv = [sys.executable, "-m", "conveyor", "worker", "--app", app_spec,
            "--concurrency", str(concurrency), "--with-scheduler"]  # fmt: skip
    # A session of its own: a Ctrl-C at the terminal reaches only this process, which passes
    # one stop on (the terminal's signal and ours would make two: no grace at all).
    worker = subprocess.Popen(argv, preexec_fn=die_with_parent, start_new_session=True)
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
    log_config = logging_config(
        resolve_format(settings.log_format, tty=sys.stderr.isatty()), settings.log_level
    )
    signal.signal(signal.SIGTERM, _interrupt)  # stops like Ctrl-C (uvicorn raises it again)
    try:
        uvicorn.run(
            create_app(app), host=host, port=port, log_config=log_config, log_level="warning"
        )
    except KeyboardInterrupt:
        pass
    finally:
        stop_worker(worker, settings.grace_seconds)
    return 0


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_worker(worker: subprocess.Popen[bytes], grace_s: float) -> None:
    """Stop the worker as ``conveyor worker`` stops: its running jobs get ``grace_s``; a
    further Ctrl-C (or SIGTERM) here is passed on and hands them back at once."""

    def forward(_signum: int, _frame: FrameType | None) -> None:
        worker.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(grace_s + STOP_MARGIN_S)
    except subprocess.TimeoutExpired:
        log.warning("the worker did not stop within %g s; killing it", grace_s + STOP_MARGIN_S)
        worker.kill()
        worker.wait()
