"""A tritonserver of our own for one command: ``s4c infer`` without ``--url`` and the demo.

The repository is brought up to date first (exported when its weights are missing or older than the
checkpoints; copied and re-exported when another ``mode`` is asked for, so the given one is never
rewritten in another mode), the server listens on free loopback ports only, and it is stopped when the
command ends, whether it succeeded or not.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from s4c.repository.export import check_layout, configured_mode, export_repository, repository_is_current
from s4c.serving.server import ServerConfig, TritonServer, free_ports


def prepare_repository(repository: str | Path, *, models: str | Path | None = None, mode: str | None = None,
                       workdir: str | Path | None = None, echo: Callable[[str], None] = print) -> Path:
    """The repository to serve: ``repository`` itself, exported when stale, or (``mode`` other than its
    configured one) a copy in ``workdir`` exported in ``mode``."""
    repository = check_layout(repository)
    if mode is not None and configured_mode(repository) != mode:
        if workdir is None:
            raise ValueError(f"{repository} is configured for mode {configured_mode(repository)}, not {mode}, "
                             f"and no folder was given for a copy")
        copy = Path(workdir) / f"model_repository_{mode}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(repository, copy)
        echo(f"serving a copy of {repository} in {mode} mode: {copy}")
        export_repository(copy, models=models, mode=mode)
        return copy
    if not repository_is_current(repository, models):
        echo(f"exporting the segmenters and the locator into {repository}")
        export_repository(repository, models=models)
    return repository


@contextmanager
def local_server(repository: str | Path, *, models: str | Path | None = None, mode: str | None = None,
                 workdir: str | Path | None = None, log_path: str | Path | None = None,
                 echo: Callable[[str], None] = print) -> Iterator[TritonServer]:
    """Start tritonserver on :func:`prepare_repository`'s repository and free loopback ports, yield it
    ready (its gRPC address is ``server.config.grpc_url``), and stop it on the way out."""
    repository = prepare_repository(repository, models=models, mode=mode, workdir=workdir, echo=echo)
    grpc, http, metrics = free_ports(3)
    config = ServerConfig(repository, grpc_port=grpc, http_port=http, metrics_port=metrics)
    log = None if log_path is None else Path(log_path)
    t = time.perf_counter()
    echo(f"starting tritonserver on {config.grpc_url}" + (f" (log: {log})" if log else ""))
    with TritonServer(config, log_path=log) as server:
        echo(f"server ready in {time.perf_counter() - t:.1f} s: {', '.join(server.models)}")
        try:
            yield server
        finally:
            echo("stopping the server")
