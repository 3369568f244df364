"""``s4c infer``: the gRPC client of the ``s4c`` and ``s4c_dual_phase`` models.

It sends int16 (Z, Y, X) volumes on the canonical grid with their spacing and affine, and writes the
answer with :func:`s4c.outputs.write_results` (labels back on each input file's own grid, a
``report.json`` and an ``overlay.png``). Transient
failures (UNAVAILABLE) are retried with back-off; every call has a deadline; TLS is optional.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from s4c import contract
from s4c.data.cohort import read_manifest
from s4c.labels import PHASES
from s4c.outputs import REPORT_FILE, labels_file, write_results
from s4c.serving.scans import Scan, ScanError, read_scan
from s4c.serving.shm import SystemSharedMemory


class ClientError(RuntimeError):
    """The server could not be reached or answered with an error; the message says which.
    ``unavailable``: the last answer was UNAVAILABLE (another endpoint may serve the call)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass(frozen=True)
class TlsConfig:
    """PEM files for gRPC over TLS (the root certificate that signed the server's; client pair optional)."""

    root_cert: Path | None = None
    private_key: Path | None = None
    cert_chain: Path | None = None


@dataclass(frozen=True)
class CaseAnswer:
    """A dual- or single-phase answer: labels by phase on the canonical grid, the decision, the report."""

    labels: dict[str, np.ndarray]
    abnormal: bool
    report: dict
    seconds: float


def make_inputs(tensors: Mapping[str, tuple[np.ndarray, str]]) -> list:
    """tritonclient gRPC inputs from ``name -> (array, Triton dtype such as 'INT16')``, in order."""
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, (array, dtype) in tensors.items():
        t = grpcclient.InferInput(name, list(array.shape), dtype)
        t.set_data_from_numpy(array)
        inputs.append(t)
    return inputs


class InferenceClient:
    """A gRPC connection to the server; ``timeout_s`` bounds each call, ``retries`` covers UNAVAILABLE.
    ``pipeline_model`` and ``dual_phase_model`` name the models it calls (a deployment may rename them)."""

    def __init__(self, url: str, *, timeout_s: float = 600.0, retries: int = 3, backoff_s: float = 1.0,
                 tls: TlsConfig | None = None, headers: Mapping[str, str] | None = None,
                 pipeline_model: str = contract.PIPELINE_MODEL,
                 dual_phase_model: str = contract.DUAL_PHASE_MODEL, shared_memory: bool = False) -> None:
        import tritonclient.grpc as grpcclient

        self.grpc = grpcclient
        self.url = url
        self.pipeline_model, self.dual_phase_model = pipeline_model, dual_phase_model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.headers = dict(headers or {})
        #: CTs and labels through system shared memory (a server on this host; needs the admin key in
        #: ``headers``, since registering a region is a restricted protocol).
        self.shared_memory = shared_memory
        kwargs = {}
        if tls is not None:
            kwargs = {"ssl": True, "root_certificates": _path(tls.root_cert), "private_key": _path(tls.private_key),
                      "certificate_chain": _path(tls.cert_chain)}
        self.client = grpcclient.InferenceServerClient(url, **kwargs)
        #: Calls retried after an UNAVAILABLE answer, over this client's life.
        self.retried = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, what: str, fn: Callable):
        """``fn()``, retried with back-off while the answer is UNAVAILABLE (the server cannot be reached,
        its queue is full, it is starting or draining). Any other error is deterministic: it is raised at
        once as a :class:`ClientError` with the server's code and message."""
        from tritonclient.utils import InferenceServerException

        delay = self.backoff_s
        for attempt in range(1, self.retries + 2):
            try:
                return fn()
            except InferenceServerException as exc:
                status = str(exc.status() or "").removeprefix("StatusCode.")
                if status == "UNAVAILABLE":
                    if attempt <= self.retries:
                        self.retried += 1
                        time.sleep(delay)
                        delay *= 2
                        continue
                    raise ClientError(self._unavailable(what, exc.message(), attempt), unavailable=True) from exc
                if status == "DEADLINE_EXCEEDED":
                    raise ClientError(f"{what}: no answer from {self.url} within {self.timeout_s:g} s") from exc
                raise ClientError(f"{what}: the S4C server answered {status or 'an error'}: {exc.message()}") from exc
        raise AssertionError("unreachable")

    def _unavailable(self, what: str, message: str, attempts: int) -> str:
        """The message for UNAVAILABLE after the last retry: an unreachable server, or a live one that
        said it cannot serve now (its message)."""
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        try:
            live = self.client.is_server_live(headers=self.headers, client_timeout=min(5.0, self.timeout_s))
        except Exception:  # any failure here means the server cannot be reached
            live = False
        if live:
            return f"{what}: the S4C server at {self.url} is unavailable ({tries}): {message}"
        return f"cannot reach the S4C server at {self.url} ({what}, {tries}): {message}"

    def _infer(self, what: str, model: str, volumes: Mapping[str, np.ndarray], small: Mapping[str, tuple],
               labels: Mapping[str, tuple[int, ...]], others: Sequence[str]):
        """One call: ``volumes`` (int16 CTs) and ``labels`` (uint8 outputs by name -> shape) in shared
        memory when it is on, else in the message like ``small`` inputs and ``others`` outputs.
        Returns (output name -> array, seconds)."""
        t = time.perf_counter()
        if not self.shared_memory:
            inputs = make_inputs({**{n: (a, "INT16") for n, a in volumes.items()}, **small})
            outputs = [self.grpc.InferRequestedOutput(n) for n in (*labels, *others)]
            r = self._call(what, lambda: self.client.infer(model, inputs, outputs=outputs,
                                                           client_timeout=self.timeout_s, headers=self.headers))
            return {n: r.as_numpy(n) for n in (*labels, *others)}, time.perf_counter() - t
        with SystemSharedMemory(self.client, self.headers) as shm:
            inputs = [self._call(what, lambda n=n, a=a: shm.input(n, a, "INT16")) for n, a in volumes.items()]
            inputs += make_inputs(small)
            outputs = [self._call(what, lambda n=n, s=s: shm.output(n, s, "UINT8")) for n, s in labels.items()]
            outputs += [self.grpc.InferRequestedOutput(n) for n in others]
            r = self._call(what, lambda: self.client.infer(model, inputs, outputs=outputs,
                                                           client_timeout=self.timeout_s, headers=self.headers))
            arrays = {n: shm.read(n) for n in labels} | {n: r.as_numpy(n) for n in others}
        return arrays, time.perf_counter() - t

    def infer_phase(self, scan: Scan, phase: str) -> CaseAnswer:
        """One phase through the ``s4c`` model."""
        small = {contract.SPACING: (np.asarray(scan.spacing, np.float32), "FP32"),
                 contract.PHASE: (np.array([phase.encode()], dtype=np.object_), "BYTES"),
                 contract.AFFINE: (np.asarray(scan.affine, np.float64), "FP64")}
        r, seconds = self._infer(f"{self.pipeline_model} {phase}", self.pipeline_model, {contract.CT: scan.ct},
                                 small, {contract.LABELS: scan.ct.shape}, (contract.ABNORMAL, contract.REPORT))
        report = json.loads(r[contract.REPORT].reshape(-1)[0])
        return CaseAnswer({phase: r[contract.LABELS]}, bool(r[contract.ABNORMAL][0]),
                          {"abnormal": report["abnormal"], "phases": {phase: report}}, seconds)

    def infer_dual(self, arterial: Scan, venous: Scan) -> CaseAnswer:
        """Both phases through the ``s4c_dual_phase`` model (each phase's labels on its own grid)."""
        volumes, small, labels = {}, {}, {}
        for phase, scan in (("arterial", arterial), ("venous", venous)):
            ct, sp, aff = contract.DUAL_INPUTS[phase]
            volumes[ct] = scan.ct
            small.update({sp: (np.asarray(scan.spacing, np.float32), "FP32"),
                          aff: (np.asarray(scan.affine, np.float64), "FP64")})
            labels[contract.DUAL_LABELS[phase]] = scan.ct.shape
        r, seconds = self._infer(self.dual_phase_model, self.dual_phase_model, volumes, small, labels,
                                 (contract.ABNORMAL, contract.REPORT))
        return CaseAnswer({p: r[contract.DUAL_LABELS[p]] for p in PHASES}, bool(r[contract.ABNORMAL][0]),
                          json.loads(r[contract.REPORT].reshape(-1)[0]), seconds)


def _path(p: Path | None) -> str | None:
    return None if p is None else str(p)


def write_answer(out: str | Path, scans: Mapping[str, Scan], answer: CaseAnswer) -> dict[str, Path]:
    """The answer as :func:`s4c.outputs.write_results` writes every case (``<phase>_labels.nii.gz`` on each
    input file's grid, ``report.json``, ``overlay.png``), with the client's time in the report."""
    report = {**answer.report, "client_seconds": round(answer.seconds, 3)}
    return write_results(out, {p: s.volume for p, s in scans.items()}, answer.labels, report)


def read_scans(paths: Mapping[str, Path], series: Mapping[str, str | None] | None = None) -> dict[str, Scan]:
    """Each phase's scan (``phase -> path``: NIfTI or DICOM folder; ``series``: ``phase -> UID``)."""
    series = series or {}
    return {phase: read_scan(path, series.get(phase)) for phase, path in paths.items()}


def infer_case(client: InferenceClient, paths: Mapping[str, Path] | Mapping[str, Scan],
               out: str | Path) -> tuple[CaseAnswer, dict]:
    """Infer one case and write its results; returns (answer, paths). ``paths``: ``phase -> path`` (one
    phase or both), or the scans already read (:func:`read_scans`)."""
    scans = {phase: p if isinstance(p, Scan) else read_scan(p) for phase, p in paths.items()}
    if set(scans) == set(PHASES):
        answer = client.infer_dual(scans["arterial"], scans["venous"])
    elif len(scans) == 1:
        (phase, scan), = scans.items()
        answer = client.infer_phase(scan, phase)
    else:
        raise ValueError(f"need one phase or both, got {sorted(scans)}")
    return answer, write_answer(out, scans, answer)


SUMMARY_COLUMNS = ("case_id", "status", "abnormal", "arterial_abnormal", "venous_abnormal", "arterial_tumor_voxels",
                   "venous_tumor_voxels", "seconds", "error")
SUMMARY_FILE = "summary.csv"
#: A case being written: ``out/<PARTIAL_PREFIX><case_id>.<pid>``, renamed to ``out/<case_id>`` when whole.
PARTIAL_PREFIX = ".partial-"


def _summary_row(case_id: str, report: Mapping) -> dict:
    row = dict.fromkeys(SUMMARY_COLUMNS, "")
    row.update(case_id=case_id, status="ok", abnormal=bool(report["abnormal"]),
               seconds=report.get("client_seconds", ""))
    for p in PHASES:
        rep = report["phases"][p]
        row[f"{p}_abnormal"], row[f"{p}_tumor_voxels"] = bool(rep["abnormal"]), rep["tumor_voxels"]
    return row


def completed_case(folder: Path) -> dict | None:
    """The report of a case folder written whole by :func:`infer_cohort` (every phase's labels and the
    report present and readable), else None."""
    try:
        report = json.loads((folder / REPORT_FILE).read_text())
        if all((folder / labels_file(p)).is_file() for p in PHASES) and set(report["phases"]) >= set(PHASES):
            return report
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def infer_with_failover(clients: Sequence[InferenceClient], first: int, fn: Callable[[InferenceClient], object]):
    """``fn(client)`` on ``clients[first]``; when that endpoint stays UNAVAILABLE after its retries, on
    the next one, round the list. Any other error is raised at once."""
    for k in range(len(clients)):
        try:
            return fn(clients[(first + k) % len(clients)])
        except ClientError as exc:
            if not exc.unavailable or k == len(clients) - 1:
                raise
    raise AssertionError("unreachable")


def infer_cohort(clients: InferenceClient | Sequence[InferenceClient], manifest: str | Path, out: str | Path, *,
                 concurrency: int = 1, progress: bool = True, resume: bool = True) -> list[dict]:
    """Every case of a cohort manifest through the dual-phase model, ``concurrency`` at a time, round
    robin over ``clients`` (several endpoints, or one load balancer) with fail-over on UNAVAILABLE.

    Each case is written into a temporary folder and renamed to ``out/<case_id>/`` once whole, so a
    killed run leaves no half case under its real name. With ``resume``, cases whose folder is whole
    are not sent again (their summary row is read back from their report) and leftover partial
    folders are removed and redone. Writes ``out/summary.csv`` (also atomically); a failed case is a
    row with its error, not the end of the run. Returns the summary rows; a row of a case taken from an
    earlier run has ``resumed`` True (not a summary column).
    """
    clients = [clients] if isinstance(clients, InferenceClient) else list(clients)
    if not clients:
        raise ValueError("infer_cohort needs at least one client")
    manifest = Path(manifest)
    root = manifest.parent if manifest.is_file() else manifest
    entries = read_manifest(manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)

    def one(index: int, entry) -> dict:
        final = out / entry.case_id
        if resume and (report := completed_case(final)) is not None:
            return {**_summary_row(entry.case_id, report), "resumed": True}
        row = dict.fromkeys(SUMMARY_COLUMNS, "")
        row["case_id"] = entry.case_id
        partial = out / f"{PARTIAL_PREFIX}{entry.case_id}.{os.getpid()}"
        try:
            scans = read_scans({p: entry.path(root, p) for p in PHASES})
            answer, _ = infer_with_failover(clients, index, lambda c: infer_case(c, scans, partial))
            if final.exists():
                shutil.rmtree(final)
            os.replace(partial, final)
        except (ScanError, ClientError, ValueError) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            row.update(status="error", error=str(exc))
            return row
        return {**_summary_row(entry.case_id, {**answer.report, "client_seconds": round(answer.seconds, 3)}),
                "resumed": False}

    rows = []
    bar = None
    if progress:
        bar = tqdm(total=len(entries), desc="cases", unit="case")
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in as_completed([pool.submit(one, i, e) for i, e in enumerate(entries)]):
            rows.append(future.result())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    order = {e.case_id: i for i, e in enumerate(entries)}
    rows.sort(key=lambda r: order[r["case_id"]])
    tmp = out / f"{PARTIAL_PREFIX}{SUMMARY_FILE}.{os.getpid()}"
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / SUMMARY_FILE)
    return rows
