"""``s4c serve``: the real ``tritonserver`` binary on this repository, with secure defaults.

On a machine without an NGC container the binary comes from the ``nvidia-pytriton`` wheel, which
ships Triton 2.51 with only the Python backend: its backend folder is copied to a writable cache with
the stub for this interpreter, and the stub is pointed at this interpreter's libpython and packages.
In an NGC ``tritonserver`` image the system install is used as it is.

Defaults follow Triton's secure-deployment guidance: bound to 127.0.0.1, ``--model-control-mode=none``,
``--strict-readiness=true``, ``--exit-on-error=true``, ``--disable-auto-complete-config`` and the admin
protocols (model repository, model config, shared memory, statistics, trace, logging) behind a key
sent as a request header. Triton has no authentication of its own: a gateway must do that.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from s4c import contract
from s4c._jit import ensure_numba_cache_dir
from s4c.export.tensorrt import ensure_engines
from s4c.repository.configs import SEGMENTER_MAX_BATCH
from s4c.repository.export import export_repository, repository_is_current
from s4c.serving.drain import ENV as RUN_DIR_ENV
from s4c.serving.drain import drain as drain_run

#: Triton protocol groups that change or reveal server state; clients need the admin key for them.
RESTRICTED = ("model-repository", "model-config", "shared-memory", "statistics", "trace", "logging")
#: Request header that carries the admin key (HTTP). Over gRPC Triton expects it with the prefix
#: ``triton-grpc-protocol-`` (:func:`grpc_admin_header`).
ADMIN_HEADER = "s4c-admin-key"


def grpc_admin_header() -> str:
    """The gRPC metadata key a client sends the admin key under."""
    return f"triton-grpc-protocol-{ADMIN_HEADER}"
MODELS = (contract.PIPELINE_MODEL, contract.DUAL_PHASE_MODEL, *contract.PATCH_MODELS)
#: The Python backend's shared-memory pool per stub: CT volumes are tens of MB, the default is 1 MB.
SHM_DEFAULT_BYTES = 64 * 1024 * 1024
SHM_GROWTH_BYTES = 64 * 1024 * 1024


def free_ports(n: int) -> list[int]:
    """``n`` loopback TCP ports that are free now (for servers started by tests, demo and benchmarks)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def session_processes(sid: int) -> dict[int, list[bytes]]:
    """pid -> argv of every process in session ``sid`` (tritonserver leads its own; its stubs are in it)."""
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6 of stat: session id
                continue
            procs[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
    return procs


def stub_models(sid: int) -> dict[int, str]:
    """Python-backend stub processes of session ``sid``: pid -> model directory name."""
    return {pid: Path(argv[1].decode(errors="replace")).parent.parent.name
            for pid, argv in session_processes(sid).items()
            if len(argv) > 1 and argv[0].endswith(b"triton_python_backend_stub")}


class ServerError(RuntimeError):
    """The server could not be found, did not start, or stopped unexpectedly."""


@dataclass(frozen=True)
class TritonInstall:
    """Where a runnable tritonserver and its Python backend are."""

    binary: Path
    python_backend: Path  # folder with libtriton_python.so
    stub: Path | None  # triton_python_backend_stub for this interpreter, when not inside python_backend
    libs: tuple[Path, ...] = ()
    version: str = "unknown"


def find_tritonserver() -> TritonInstall:
    """The nvidia-pytriton wheel's server, else a system install (/opt/tritonserver), else an error."""
    try:
        import pytriton  # the serving extra (nvidia-pytriton wheel); absent in an NGC image

        root = Path(pytriton.__file__).resolve().parent / "tritonserver"
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        binary = root / "bin" / "tritonserver"
        stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
        if binary.exists():
            if not stub.exists():
                raise ServerError(f"the nvidia-pytriton wheel has no Python backend stub for Python {ver}")
            libs = (root.parent.parent / "nvidia_pytriton.libs",)
            return TritonInstall(binary, root / "backends" / "python", stub, libs, "2.51.0 (nvidia-pytriton)")
    except ImportError:
        pass
    for base in (Path("/opt/tritonserver"),):
        if (base / "bin" / "tritonserver").exists():
            return TritonInstall(base / "bin" / "tritonserver", base / "backends" / "python", None, (), "system")
    found = shutil.which("tritonserver")
    if found:
        base = Path(found).resolve().parent.parent
        return TritonInstall(Path(found), base / "backends" / "python", None, (), "system")
    raise ServerError("no tritonserver found: install the serving extras (pip install nvidia-pytriton) or run in "
                      "an NGC tritonserver image")


def cache_root(environ: dict | None = None) -> Path:
    """Where s4c keeps files between runs: ``$S4C_CACHE``, else ``~/.cache/s4c`` when it can be written,
    else ``<tempdir>/s4c-cache-<uid>`` (a service user may have no writable home)."""
    env = os.environ if environ is None else environ
    if env.get("S4C_CACHE"):
        return Path(env["S4C_CACHE"])
    home = Path(env.get("HOME") or Path.home()) / ".cache" / "s4c"
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            return home
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"s4c-cache-{os.getuid()}"
        fallback.mkdir(mode=0o700, exist_ok=True)
        if fallback.lstat().st_uid != os.getuid() or fallback.is_symlink():
            raise ServerError(f"{home} cannot be written and {fallback} belongs to someone else; set S4C_CACHE") \
                from None
        return fallback


def backend_directory(install: TritonInstall, cache: Path | None = None) -> Path:
    """A backend folder holding ``python/`` with the stub beside libtriton_python.so."""
    if install.stub is None:
        return install.python_backend.parent
    cache = cache or cache_root() / "triton-backends"
    dest = cache / f"py{sys.version_info.major}{sys.version_info.minor}" / "python"
    marker = dest / ".complete"
    if not marker.exists():
        tmp = dest.with_name(f"python.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(install.python_backend, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(install.stub, tmp / "triton_python_backend_stub")
        (tmp / ".complete").write_text(str(install.binary) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return dest.parent


def server_env(install: TritonInstall, base: dict | None = None) -> dict:
    """Environment for the server and its stubs.

    * The nvidia-pytriton wheel's server (``install.stub`` set): its libraries and this interpreter's
      libpython first on ``LD_LIBRARY_PATH`` (the stub links libpython, and the system's copy would not
      match this interpreter's standard library), and this interpreter's ``bin/`` first on ``PATH`` (the
      stub finds the venv's packages through the python there; PYTHONPATH alone was not enough).
    * A system install (an NGC image): what the image's entrypoint set up comes first. The NGC entrypoint
      (``/opt/nvidia/nvidia_entrypoint.sh``) may put CUDA's forward-compatibility libraries on
      ``LD_LIBRARY_PATH``; a system LIBDIR ahead of them would load the host driver's libcuda instead.
      So LIBDIR is appended, and ``PATH`` gains this interpreter's folder only when it lacks it.
    * ``NUMBA_CACHE_DIR`` where numba's own cache folders cannot be written (:mod:`s4c._jit`).
    """
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    existing = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    bindir = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    if install.stub is not None:
        ours = [str(p) for p in install.libs] + ([libdir] if libdir else [])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ours + [p for p in existing if p not in ours])
        env["PATH"] = os.pathsep.join([bindir] + [p for p in path if p != bindir])
    else:
        added = [libdir] if libdir and libdir not in existing else []
        env["LD_LIBRARY_PATH"] = os.pathsep.join(existing + added)
        env["PATH"] = os.pathsep.join(path if bindir in path else [bindir, *path])
    if not env["LD_LIBRARY_PATH"]:
        del env["LD_LIBRARY_PATH"]  # an empty entry would mean the current folder
    ensure_numba_cache_dir(env)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


SHM_DIR = Path("/dev/shm")


def remove_shm_regions(prefix: str, shm_dir: Path = SHM_DIR) -> list[Path]:
    """Remove the shared-memory regions named ``prefix``... once their server has exited. A stub
    killed with its server (SIGKILL, OOM) never unlinks its regions, and they hold RAM until reboot."""
    if not prefix or "/" in prefix:
        raise ValueError(f"bad shared-memory prefix {prefix!r}")
    removed = []
    for path in sorted(shm_dir.glob(f"{prefix}*")) if shm_dir.is_dir() else []:
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


@dataclass
class ServerConfig:
    """How to run the server; the defaults are the secure local ones."""

    repository: Path
    grpc_port: int = contract.GRPC_PORT
    http_port: int = contract.HTTP_PORT
    metrics_port: int = contract.METRICS_PORT
    address: str = "127.0.0.1"
    #: None: each model's config.pbtxt (CPU form); else configs/<name>.pbtxt where a model has one.
    config_name: str | None = None
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    exit_timeout_s: int = 30
    log_verbose: int = 0
    #: gRPC over TLS: the server's PEM certificate and key (and a root certificate for mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    extra_args: Sequence[str] = ()
    #: Names this server's Python-backend shared-memory regions (/dev/shm/<prefix>...), so that
    #: :meth:`TritonServer.stop` can remove those a killed stub leaves behind (64 MiB each).
    shm_prefix: str = field(default_factory=lambda: f"s4c_{secrets.token_hex(6)}_")

    def command(self, install: TritonInstall, backend_dir: Path) -> list[str]:
        restricted = ",".join(RESTRICTED) + f":{ADMIN_HEADER}={self.admin_key}"
        cmd = [
            str(install.binary),
            f"--model-repository={Path(self.repository).resolve()}",
            f"--backend-directory={backend_dir}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--grpc-address={self.address}", f"--grpc-port={self.grpc_port}",
            f"--http-address={self.address}", f"--http-port={self.http_port}",
            f"--metrics-address={self.address}", f"--metrics-port={self.metrics_port}",
            f"--grpc-restricted-protocol={restricted}",
            f"--http-restricted-api={restricted}",
            f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.config_name:
            cmd.append(f"--model-config-name={self.config_name}")
        if self.tls_cert or self.tls_key:
            if not (self.tls_cert and self.tls_key):
                raise ValueError("TLS needs both a certificate and a key")
            cmd += ["--grpc-use-ssl=true", f"--grpc-server-cert={self.tls_cert}", f"--grpc-server-key={self.tls_key}"]
            if self.tls_client_ca:
                cmd += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={self.tls_client_ca}"]
        return cmd + list(self.extra_args)

    @property
    def local_host(self) -> str:
        """Where a client on this host reaches the server (loopback when it listens on every address)."""
        return "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address

    @property
    def grpc_url(self) -> str:
        return f"{self.local_host}:{self.grpc_port}"


class TritonServer:
    """A running tritonserver process: ``start()``, ``wait_ready()``, ``stop()``; a context manager."""

    def __init__(self, config: ServerConfig, *, log_path: Path | None = None, install: TritonInstall | None = None,
                 models: Sequence[str] = MODELS) -> None:
        self.config = config
        self.install = install or find_tritonserver()
        self.log_path = log_path
        self.models = tuple(models)
        self.process: subprocess.Popen | None = None
        self._log = None
        self.run_dir: Path | None = None
        self.drained: tuple[bool, float] | None = None

    def start(self) -> TritonServer:
        backend_dir = backend_directory(self.install)
        cmd = self.config.command(self.install, backend_dir)
        out = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            out = self._log
        self.run_dir = Path(tempfile.mkdtemp(prefix="s4c-run-"))
        env = server_env(self.install)
        env[RUN_DIR_ENV] = str(self.run_dir)
        self.process = subprocess.Popen(cmd, env=env, stdout=out,
                                        stderr=subprocess.STDOUT if out else None, start_new_session=True)
        return self

    def _ready(self, path: str) -> bool:
        """GET a readiness endpoint over the loopback HTTP port (plain HTTP whether gRPC uses TLS or not)."""
        try:
            with urllib.request.urlopen(f"http://{self.config.local_host}:{self.config.http_port}{path}",
                                        timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stub_pids(self) -> dict[int, str]:
        """Python-backend stub processes of this server: pid -> model directory name."""
        return {} if self.process is None else stub_models(self.process.pid)

    def not_ready(self) -> list[str]:
        """Models that report not ready (a crashed Python stub shows here); ['server'] if unreachable."""
        if not self._ready("/v2/health/live"):
            return ["server"]
        return [m for m in self.models if not self._ready(f"/v2/models/{m}/ready")]

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Block until the server and every model report ready; raise :class:`ServerError` otherwise."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode} while starting"
                                  + self._log_hint())
            if self._ready("/v2/health/ready") and not self.not_ready():
                return
            time.sleep(0.5)
        raise ServerError(f"tritonserver not ready after {timeout_s:.0f} s" + self._log_hint())

    def _log_hint(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        return f"; last log lines ({self.log_path}):\n" + "\n".join(tail)

    def stop(self, timeout_s: float | None = None, drain: bool = True) -> int | None:
        """Drain (refuse new requests, let the in-flight ones finish, up to the exit timeout; see
        :mod:`s4c.serving.drain`), SIGTERM, wait for Triton's own exit timeout plus a margin, then
        SIGKILL the group."""
        if self.process is None:
            return None
        timeout_s = self.config.exit_timeout_s + 15 if timeout_s is None else timeout_s
        if drain and self.process.poll() is None and self.run_dir is not None:
            self.drained = drain_run(self.run_dir, self.config.exit_timeout_s)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Stubs are in the server's session; make sure none outlives it.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        remove_shm_regions(self.config.shm_prefix)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        return self.process.returncode

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(config: ServerConfig, *, models: str | Path | None = None, build_engines: bool = False,
          echo=print, check_every_s: float = 5.0, max_restarts: int = 5) -> int:
    """Run the server in the foreground until Ctrl-C / SIGTERM; returns its exit code.

    ``build_engines``: build missing or stale TensorRT plans first (the GPU server's first start).
    Triton does not restart a crashed Python stub: every ``check_every_s`` the per-model readiness is
    polled, and when a model stays not ready (or the server dies) the server is stopped and started
    again, up to ``max_restarts`` times.
    """
    repo = Path(config.repository)
    if not repository_is_current(repo, models):
        echo(f"exporting the segmenters into {repo} ...")
        export_repository(repo, models=models)
    if build_engines:
        ensure_engines(repo, max_batch=SEGMENTER_MAX_BATCH, log=echo)
    server = TritonServer(config)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    restarts = 0
    try:
        while True:
            try:
                server.start()
                echo(f"tritonserver {server.install.version}: repository {repo.resolve()}, form "
                     f"{config.config_name or 'cpu (python backend + ONNX Runtime)'}")
                server.wait_ready()
                echo(f"ready: {', '.join(server.models)} on grpc {config.grpc_url}, http {config.address}:"
                     f"{config.http_port}, metrics {config.address}:{config.metrics_port}; admin APIs need the "
                     f"'{ADMIN_HEADER}' header (gRPC: '{grpc_admin_header()}'). Ctrl-C stops.")
                failed = _watch(server, check_every_s)
            except ServerError as exc:  # a start that failed counts as one more failure, not the end
                failed = [str(exc).splitlines()[0]]
            if restarts >= max_restarts:
                echo(f"error: {'; '.join(failed)}, again after {restarts} restarts; giving up")
                server.stop(timeout_s=10, drain=False)
                return 1
            restarts += 1
            echo(f"{'; '.join(failed)}: restarting the server ({restarts}/{max_restarts})")
            server.stop(timeout_s=10, drain=False)
    except KeyboardInterrupt:
        echo("stopping: new requests are refused, waiting for the ones in flight ...")
        code = server.stop()
        if server.drained is not None:
            done, waited = server.drained
            echo(f"in-flight requests {'finished' if done else 'still running at the exit timeout'} "
                 f"after {waited:.1f} s")
        echo(f"stopped (exit code {code})")
        return 0
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _watch(server: TritonServer, every_s: float) -> list[str]:
    """Block while the server, every model and every Python stub are alive; return what failed.

    A dead stub is checked directly: Triton 2.51 answers its requests "Stub process ... is not
    healthy" but may keep reporting the model ready, and does not start the stub again.
    """
    stubs = server.stub_pids()
    misses = 0
    while True:
        time.sleep(every_s)
        if server.process.poll() is not None:
            return [f"tritonserver exited (code {server.process.returncode})"]
        alive = server.stub_pids()
        dead = sorted({model for pid, model in stubs.items() if pid not in alive})
        if dead:
            return [f"the Python stub of {m} died" for m in dead]
        failed = server.not_ready()
        misses = misses + 1 if failed else 0
        if misses >= 2:
            return [f"{m} not ready" for m in failed]
