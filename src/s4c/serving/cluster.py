"""Replicas on one host: N ``tritonserver`` replicas of one repository on loopback ports, behind
nginx as an HTTP/2 gRPC load balancer (``grpc_pass``) with passive health checks.

nginx sends each new gRPC call to the next live replica (round robin). A replica that refuses or drops
a connection is marked failed for ``fail_timeout_s`` (``max_fails=1``), and a call that could not be
sent to it goes to the next one (``grpc_next_upstream error timeout``); a call already running on a
replica that dies fails with UNAVAILABLE, which the s4c client retries. :class:`LocalCluster` starts
and stops it all; ``deploy/local/cluster.py`` (``make cluster``) is its command line.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from s4c.serving.server import ServerConfig, ServerError, TritonServer, free_ports

#: nginx passive health check: a replica is skipped this long after a failed connection.
FAIL_TIMEOUT_S = 10

NGINX_CONF = """\
# Written by s4c.serving.cluster: a gRPC load balancer over {n} s4c replicas.
{user}worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # One line per call: when it ended, the status, which replica(s) nginx tried, their answers.
    log_format s4c '$msec $status "$upstream_addr" "$upstream_status" $request_time';
    access_log {run}/access.log s4c;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    # CT volumes are tens to hundreds of MB per call.
    client_max_body_size 0;
    upstream s4c_replicas {{
{servers}
    }}
    server {{
        listen {address}:{port} http2;
        location / {{
            grpc_pass grpc://s4c_replicas;
            # A call that could not be sent to a replica goes to the next one (not a call under way).
            grpc_next_upstream error timeout;
            grpc_connect_timeout 2s;
            grpc_read_timeout {timeout}s;
            grpc_send_timeout {timeout}s;
        }}
    }}
}}
"""


class ClusterError(RuntimeError):
    """The load balancer or a replica could not be started."""


def find_nginx() -> str:
    """The nginx binary (Debian package ``nginx``)."""
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)
    if path is None:
        raise ClusterError("nginx not found: install it (Debian: apt-get install nginx)")
    return path


@dataclass
class LocalCluster:
    """``replicas`` servers of ``repository`` behind nginx on ``address:port`` (a free port when 0)."""

    repository: Path
    replicas: int = 2
    port: int = 0
    address: str = "127.0.0.1"
    workdir: Path | None = None
    fail_timeout_s: int = FAIL_TIMEOUT_S
    call_timeout_s: int = 600
    servers: list[TritonServer] = field(default_factory=list)
    nginx: subprocess.Popen | None = None

    @property
    def access_log(self) -> Path:
        """nginx's per-call log: ``<end time> <status> "<replicas tried>" "<their statuses>" <seconds>``."""
        return Path(self.workdir) / "nginx" / "access.log"

    @property
    def url(self) -> str:
        """The load balancer's gRPC endpoint."""
        return f"{self.address}:{self.port}"

    def start(self, ready_timeout_s: float = 300) -> LocalCluster:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="s4c-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for i in range(self.replicas):
                grpc, http, metrics = free_ports(3)
                cfg = ServerConfig(Path(self.repository), grpc_port=grpc, http_port=http, metrics_port=metrics)
                self.servers.append(TritonServer(cfg, log_path=self.workdir / f"replica{i}.log").start())
            for s in self.servers:
                s.wait_ready(ready_timeout_s)
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nginx(self) -> None:
        run = self.workdir / "nginx"
        run.mkdir(exist_ok=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run / sub).mkdir(exist_ok=True)
            (run / sub).chmod(0o777)  # nginx's workers write request bodies here as their own user
        user = ""
        if os.geteuid() == 0:  # workers drop to nobody; name its real group (Debian: nogroup)
            nobody = pwd.getpwnam("nobody")
            user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"
        if not self.port:
            self.port = free_ports(1)[0]
        servers = "\n".join(f"        server {s.config.grpc_url} max_fails=1 fail_timeout={self.fail_timeout_s}s;"
                            for s in self.servers)
        conf = run / "nginx.conf"
        conf.write_text(NGINX_CONF.format(n=len(self.servers), user=user, run=run, servers=servers,
                                          address=self.address, port=self.port, timeout=self.call_timeout_s))
        log = (self.workdir / "nginx.log").open("ab")
        self.nginx = subprocess.Popen([find_nginx(), "-p", str(run), "-c", str(conf), "-g", "daemon off;"],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                raise ClusterError(f"nginx exited with {self.nginx.returncode}: "
                                   f"{(self.workdir / 'nginx.log').read_text(errors='replace')[-2000:]}")
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((self.address, self.port)) == 0:
                    return
            time.sleep(0.2)
        raise ClusterError(f"nginx not listening on {self.url} after 30 s")

    def kill_replica(self, index: int) -> float:
        """SIGKILL replica ``index`` and its stubs (a crash); returns the monotonic time of the kill."""
        server = self.servers[index]
        if server.process is None or server.process.poll() is not None:
            raise ServerError(f"replica {index} is not running")
        t = time.monotonic()
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
        return t

    def stop(self) -> None:
        """Stop nginx (graceful, then killed), then every replica (drained, as s4c serve stops)."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
                self.nginx.wait()
        self.nginx = None
        for s in self.servers:
            s.stop()
        self.servers = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
