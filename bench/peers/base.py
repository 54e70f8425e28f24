"""What the harness needs from each system under test.

A system defines two jobs with the same behaviour as every other system's:

* ``noop(t_enq)``: calls ``bench.ledger.mark(t_enq, t_start)`` and returns;
* ``sleep(t_enq)``: waits 10 ms (``await asyncio.sleep(0.01)`` where the system runs
  coroutines, ``time.sleep(0.01)`` where it only runs plain functions), then marks.

For the defaults workload a system also names, in ``handlers``, its no-op as a plain ``def``
and as an ``async def`` (each only where its docs show that kind), and ``quickstart`` gives its
workers as its own docs start them first: the quick-start command, every setting at its default.

``t_enq`` is the wall-clock time the harness took just before calling the enqueue API (0.0 in
bulk runs). The harness reads the ledger to know when jobs started and ended; a system whose
own record of a terminal state is stricter (Conveyor: the finished row in PostgreSQL) may add
``drained()``.
"""

from __future__ import annotations

import asyncio
import sysconfig
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

if TYPE_CHECKING:  # not at run time: RQ's work horses import peer modules for every job
    from bench.env import Servers

Kind = Literal["noop", "sleep", "noop_sync", "noop_async"]
Handler = Literal["sync", "async"]
Workload = Literal["throughput", "latency", "io"]
T = TypeVar("T")


class System(ABC):
    name: ClassVar[str]  # key on the command line, e.g. "rq-simple"
    label: ClassVar[str]  # shown in tables
    packages: ClassVar[tuple[str, ...]] = ()  # distributions whose versions the report lists
    uses: ClassVar[tuple[str, ...]] = ("redis",)  # "redis" and/or "postgresql"
    durable: ClassVar[str] = ""  # where an accepted job lives, for the report
    records_finish: ClassVar[bool] = False  # drained() reads the system's own durable record
    handlers: ClassVar[dict[Handler, Kind]] = {}  # defaults workload: handler kind -> its no-op

    def __init__(self, servers: Servers) -> None:
        self.servers = servers

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Called after the servers were emptied: create schemas, queues, clients."""

    @abstractmethod
    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        """Enqueue ``n`` jobs with t_enq=0 the fastest documented way (a bulk API if any)."""

    @abstractmethod
    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        """Enqueue one job; called from several threads at once."""

    @abstractmethod
    def workers(self, workload: Workload) -> list[list[str]]:
        """argv of the worker processes, in this system's most favourable documented
        configuration for the workload, using both cores."""

    def config(self, workload: Workload) -> str:
        """One line for the report: how the workers ran."""
        return " ; ".join(
            " ".join(argv[2:] if argv[1] == "-m" else argv) for argv in self.workers(workload)
        )

    def worker_env(self) -> dict[str, str]:
        """Extra environment for the worker processes (they also get BENCH_LEDGER,
        BENCH_REDIS and BENCH_PG, the URLs of this measurement's servers)."""
        return {}

    def quickstart(self, handler: Handler) -> list[list[str]]:
        """argv of the worker processes as the system's docs start them first (the defaults
        workload): the quick-start command, nothing tuned, two worker processes where the
        command starts one."""
        raise NotImplementedError(f"{self.name} has no quick-start in the suite")

    def quickstart_config(self, handler: Handler) -> str:
        """One line for the report: the quick-start commands, as a user types them."""
        commands = Counter(
            " ".join(argv[2:] if argv[1] == "-m" else [Path(argv[0]).name, *argv[1:]])
            for argv in self.quickstart(handler)
        )
        return " ; ".join(f"{n} x {cmd}" if n > 1 else cmd for cmd, n in commands.items())

    def quickstart_env(self) -> dict[str, str]:
        """Environment of the quick-start workers: where the servers are, nothing tuned."""
        return self.worker_env()

    def enqueue_quickstart(self, handler: Handler, n: int) -> None:
        """Enqueue ``n`` no-ops of the handler kind with the enqueue call's default options."""
        self.enqueue_bulk(self.handlers[handler], n)

    def drained(self, n: int) -> float | None:
        """Wall-clock time the n-th job reached a durable terminal state, when the system
        records one stricter than the ledger; None to use the ledger's last end."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients (the harness drops the databases)."""


class AsyncBridge:
    """An event loop on a background thread, for harness-side calls into asyncio clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:  # noqa: B027 - optional hook
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def script(name: str) -> str:
    """A console script installed beside this interpreter (``rq``, ``celery``, ...)."""
    return str(Path(sysconfig.get_path("scripts")) / name)
