"""Reliability suite against the real server, started with ``s4c serve`` (its supervision included).

    python benchmarks/reliability.py            # make reliability -> benchmarks/results/reliability.json
    python benchmarks/reliability.py --quick    # the CI-sized run (tests/test_reliability.py)
    python benchmarks/reliability.py --soak 240 # load for 4 hours

1. Load: K gRPC clients send M dual-phase requests; every answer is compared byte for byte with the
   single-client answer for the same input; a ledger checks that each request ended in exactly one
   result or one explicit error; the server's memory (PSS of tritonserver and its stubs) must grow by
   less than 50 MB over the second half of the run.
2. Faults, each with its time to recover and whether the next request succeeds: a batch that hangs
   (the model's watchdog fails it, other requests go on), a full queue (REJECTED at once), a client that
   times out mid-upload, the Python stub killed mid-request (an error, not a hang; readiness turns
   false; ``s4c serve`` restarts the server), SIGTERM with requests in flight (they finish, new ones
   are refused, the server exits within its exit timeout).
3. Bad inputs: the corpus of ``bad_inputs.py``, each needing its typed error, the server staying ready.
4. Security defaults: loopback only, model control none, admin protocols refused without the key, no
   PHI (file names, header text) in server logs or reports, output NIfTI without header text.

The fault models (``segmenter_hang``, ``s4c_hang``, and ``s4c_full``: the ``s4c`` model in full mode, slow
enough to kill mid-request) live only in the suite's own copy of the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bad_inputs import write_corpus  # noqa: E402
from bench_serving import session_rss_bytes  # noqa: E402
from s4c import contract  # noqa: E402
from s4c.data.phantom import generate_case  # noqa: E402
from s4c.io import load_nifti, save_nifti  # noqa: E402
from s4c.repository.export import export_repository  # noqa: E402
from s4c.serving.client import make_inputs  # noqa: E402
from s4c.serving.server import free_ports, grpc_admin_header, stub_models  # noqa: E402

HANG_SEGMENTER = '''
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Fault model: every batch takes far longer than the pipeline's watchdog allows."""

    def execute(self, requests):
        time.sleep(30)
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "CT_PATCHES").as_numpy()
            labels = np.zeros((len(x), 64, 64, 64), np.uint8)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("LABELS", labels)]))
        return out
'''

PHI = "DOE^JANE_MRN0042"  # planted in file names and header text; must never reach the server side


class Suite:
    def __init__(self, work: Path, quick: bool) -> None:
        import tritonclient.grpc as grpcclient

        self.g = grpcclient
        self.work, self.quick = work, quick
        self.repo = work / "repo"
        self.proc: subprocess.Popen | None = None
        self.log = work / "serve.log"
        self.key = "reliability-admin-key"
        self.grpc, self.http, self.metrics = free_ports(3)
        self.url = f"127.0.0.1:{self.grpc}"

    # --- server -----------------------------------------------------------------------------------
    def build_repository(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        shutil.copytree(ROOT / "model_repository", self.repo,
                        ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__", "*.md"))
        export_repository(self.repo)
        seg = self.repo / "segmenter_hang"
        (seg / "1").mkdir(parents=True)
        (seg / "1" / "model.py").write_text(HANG_SEGMENTER)
        cfg = (self.repo / "segmenter_venous" / "config.pbtxt").read_text()
        cfg = cfg.replace("segmenter_venous", "segmenter_hang")
        (seg / "config.pbtxt").write_text(cfg)
        hang = self.repo / "s4c_hang"
        shutil.copytree(self.repo / "s4c", hang, ignore=shutil.ignore_patterns("configs"))
        text = (self.repo / "s4c" / "config.pbtxt").read_text()
        text = text.replace('name: "s4c"', 'name: "s4c_hang"').replace("max_queue_size: 32", "max_queue_size: 1")
        text = text.replace("count: 2", "count: 1").replace('string_value: "segmenter_venous"',
                                                            'string_value: "segmenter_hang"')
        text = text.replace('key: "batch_timeout_s"\n  value: { string_value: "300.0" }',
                            'key: "batch_timeout_s"\n  value: { string_value: "3" }')
        assert "segmenter_hang" in text and 'string_value: "3"' in text
        (hang / "config.pbtxt").write_text(text)
        infos = json.loads((hang / "1" / "segmenters.json").read_text())
        infos["segmenter_hang"] = infos["segmenter_venous"]
        (hang / "1" / "segmenters.json").write_text(json.dumps(infos))
        # The whole-volume mode takes long enough per request for a stub to be killed mid-request
        # (roi mode answers the suite's large case in about a second).
        full = self.repo / "s4c_full"
        shutil.copytree(self.repo / "s4c", full, ignore=shutil.ignore_patterns("configs"))
        text = (self.repo / "s4c" / "config.pbtxt").read_text().replace('name: "s4c"', 'name: "s4c_full"')
        text = text.replace("count: 2", "count: 1").replace('key: "mode"\n  value: { string_value: "roi" }',
                                                            'key: "mode"\n  value: { string_value: "full" }')
        assert 'string_value: "full"' in text
        (full / "config.pbtxt").write_text(text)

    def start(self) -> float:
        (self.work / "key").write_text(self.key)
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s4c.cli", "serve", "--model-repository", str(self.repo), "--grpc-port",
             str(self.grpc), "--http-port", str(self.http), "--metrics-port", str(self.metrics), "--admin-key-file",
             str(self.work / "key"), "--exit-timeout", "20"],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(240)
        return time.perf_counter() - t

    def ready(self, model: str = contract.DUAL_PHASE_MODEL) -> bool:
        c = self.g.InferenceServerClient(self.url)
        try:
            return bool(c.is_model_ready(model, client_timeout=3))
        except Exception:
            return False
        finally:
            c.close()

    def wait_ready(self, timeout: float) -> float:
        t = time.perf_counter()
        while time.perf_counter() - t < timeout:
            if all(self.ready(m) for m in ("s4c", "s4c_dual_phase", "segmenter_arterial", "segmenter_venous")):
                return time.perf_counter() - t
            if self.proc.poll() is not None:
                raise RuntimeError(f"s4c serve exited ({self.proc.returncode}); see {self.log}")
            time.sleep(0.25)
        raise RuntimeError(f"not ready after {timeout} s; see {self.log}")

    def tritonserver_pid(self) -> int | None:
        """The tritonserver child of ``s4c serve`` (it leads its own session, with the stubs in it)."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                argv0 = (stat.parent / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid and argv0.endswith(b"tritonserver"):
                return int(stat.parent.name)
        return None

    def server_sid(self) -> int:
        return self.tritonserver_pid() or self.proc.pid

    def stub_pids(self, model: str, sid: int | None = None) -> list[int]:
        """Stub processes of ``model`` in the session ``sid`` (default: the running tritonserver's)."""
        sid = sid if sid is not None else self.tritonserver_pid()
        return [] if sid is None else [pid for pid, m in stub_models(sid).items() if m == model]

    # --- requests ---------------------------------------------------------------------------------
    def dual_inputs(self, a: np.ndarray, v: np.ndarray, sp=(2.5, 2.5, 2.5)):
        spacing = (np.asarray(sp, np.float32), "FP32")
        return make_inputs({"ARTERIAL": (a, "INT16"), "VENOUS": (v, "INT16"), "ARTERIAL_SPACING": spacing,
                            "VENOUS_SPACING": spacing})

    def phase_inputs(self, ct: np.ndarray, sp=(2.5, 2.5, 2.5)):
        return make_inputs({"CT": (ct, "INT16"), "SPACING": (np.asarray(sp, np.float32), "FP32"),
                            "PHASE": (np.array([b"venous"], dtype=np.object_), "BYTES")})

    def attempt(self, model: str, ct: np.ndarray, timeout: float) -> tuple[str, float]:
        """One single-phase request on its own connection: ('ok' or 'STATUS: message', seconds)."""
        c = self.g.InferenceServerClient(self.url)
        t = time.perf_counter()
        try:
            c.infer(model, self.phase_inputs(ct), client_timeout=timeout)
            outcome = "ok"
        except Exception as exc:
            outcome = f"{exc.status()}: {exc.message()}"[:200]
        finally:
            c.close()
        return outcome, time.perf_counter() - t

    def answer_bytes(self, result) -> bytes:
        report = json.loads(result.as_numpy(contract.REPORT)[0])
        for p in report["phases"].values():  # timings differ run to run; everything else must not
            p.pop("timings_s", None)
        return b"".join(result.as_numpy(n).tobytes() for n in ("LABELS_ARTERIAL", "LABELS_VENOUS", "ABNORMAL")) + \
            json.dumps(report, sort_keys=True).encode()

    def good_request(self, ct: np.ndarray | None = None, timeout: float = 120) -> bool:
        return self.attempt("s4c", self.small if ct is None else ct, timeout)[0] == "ok"

    # --- 1. load ----------------------------------------------------------------------------------
    def load(self, clients: int, per_client: int, soak_minutes: float | None) -> dict:
        cases = [generate_case(s, abnormal=bool(s % 2), shape=(48, 64, 64), spacing=(2.5, 2.5, 2.5), case_id=f"l{s}")
                 for s in range(4)]
        inputs = [(c.arterial.astype(np.int16), c.venous.astype(np.int16)) for c in cases]
        c = self.g.InferenceServerClient(self.url)
        reference = [self.answer_bytes(c.infer("s4c_dual_phase", self.dual_inputs(*x), client_timeout=120))
                     for x in inputs]
        c.close()
        ledger: dict[int, list[str]] = {}
        lock = threading.Lock()
        samples: list[tuple[float, int]] = []
        mismatches = failures = 0
        deadline = None if soak_minutes is None else time.monotonic() + 60 * soak_minutes
        counter = iter(range(10**9))

        def worker(k: int) -> None:
            nonlocal mismatches, failures
            client = self.g.InferenceServerClient(self.url)
            n = 0
            while (deadline is None and n < per_client) or (deadline is not None and time.monotonic() < deadline):
                with lock:
                    rid = next(counter)
                    ledger[rid] = []
                i = (k + n) % len(inputs)
                try:
                    r = client.infer("s4c_dual_phase", self.dual_inputs(*inputs[i]), client_timeout=300,
                                     request_id=str(rid))
                    outcome = "ok" if self.answer_bytes(r) == reference[i] else "mismatch"
                except Exception as exc:
                    outcome = f"error: {type(exc).__name__}"
                with lock:
                    ledger[rid].append(outcome)
                    mismatches += outcome == "mismatch"
                    failures += outcome.startswith("error")
                n += 1
            client.close()

        def sampler(stop: threading.Event) -> None:
            t0 = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - t0, session_rss_bytes(self.server_sid())))
                stop.wait(0.5)

        stop = threading.Event()
        th = threading.Thread(target=sampler, args=(stop,), daemon=True)
        th.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(worker, range(clients)))
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
        rss = np.array([s for _, s in samples], dtype=np.float64)
        half = len(rss) // 2
        tail = max(1, len(rss) // 10)
        growth = (np.median(rss[-tail:]) - np.median(rss[max(0, half - tail): half + tail])) / 2**20 if len(rss) > 4 \
            else 0.0
        ledger_ok = all(len(v) == 1 for v in ledger.values()) and len(ledger) == sum(1 for _ in ledger)
        return {"clients": clients, "requests": len(ledger), "failures": failures, "mismatches": mismatches,
                "rss_growth_mb": round(float(growth), 2), "rss_samples": len(rss),
                "rss_start_mb": round(float(rss[0]) / 2**20, 1) if len(rss) else None,
                "rss_end_mb": round(float(rss[-1]) / 2**20, 1) if len(rss) else None,
                "ledger_ok": bool(ledger_ok), "seconds": round(wall, 1),
                "requests_per_s": round(len(ledger) / wall, 2)}

    # --- 2. faults --------------------------------------------------------------------------------
    def fault_hanging_batch(self) -> dict:
        with ThreadPoolExecutor(1) as pool:
            hang = pool.submit(self.attempt, "s4c_hang", self.small, 60)
            others_ok = self.good_request()  # served while the other request's batch hangs
            outcome, seconds = hang.result()
        failed_by_watchdog = "took longer than 3" in outcome
        ok = self.good_request()
        return {"name": "batch hangs (watchdog)", "recovered": bool(failed_by_watchdog and others_ok and ok),
                "seconds": round(seconds, 2), "error": outcome, "others_served": others_ok}

    def fault_queue_full(self) -> dict:
        futures = []
        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                futures.append(pool.submit(self.attempt, "s4c_hang", self.small, 60))
                time.sleep(0.3)
            results = [f.result() for f in futures]
        rejected = [(o, s) for o, s in results if "queue" in o.lower() or "REJECT" in o.upper()]
        ok = self.good_request()
        return {"name": "queue full (max_queue_size 1)", "recovered": bool(rejected and ok),
                "seconds": round(min((s for _, s in rejected), default=float("nan")), 3),
                "rejected": len(rejected), "example": rejected[0][0][:160] if rejected else None}

    def fault_client_timeout(self) -> dict:
        c = self.g.InferenceServerClient(self.url)
        t = time.perf_counter()
        try:
            c.infer("s4c", self.phase_inputs(self.big), client_timeout=0.05)
            timed_out = False
        except Exception as exc:
            timed_out = "DEADLINE" in str(exc.status())
        c.close()
        ready = self.ready("s4c")
        ok = self.good_request()
        return {"name": "client times out mid-upload", "recovered": bool(timed_out and ready and ok),
                "seconds": round(time.perf_counter() - t, 2)}

    def fault_stub_killed(self) -> dict:
        with ThreadPoolExecutor(1) as pool:
            request = pool.submit(self.attempt, "s4c_full", self.big, 120)
            time.sleep(1.5)
            killed = self.stub_pids("s4c_full")
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            t_kill = time.perf_counter()
            outcome, seconds = request.result(130)
        not_ready_seen = False
        while time.perf_counter() - t_kill < 6:  # before s4c serve's supervisor restarts the server
            if not self.ready("s4c"):
                not_ready_seen = True
                break
            time.sleep(0.2)
        deadline = time.perf_counter() + 120
        ok = False
        while time.perf_counter() < deadline and not ok:
            ok = self.good_request(timeout=30)
            if not ok:
                time.sleep(0.5)
        recover = time.perf_counter() - t_kill
        # Triton 2.51 answers "stub not healthy" and may keep the model ready; s4c serve sees the dead
        # stub and restarts the server. What must hold: an error instead of a hang, then service again.
        return {"name": "Python stub killed mid-request", "recovered": bool(ok and outcome != "ok" and seconds < 120),
                "seconds": round(time.perf_counter() - t_kill, 2), "client_error_after_s": round(seconds, 2),
                "client_error": outcome, "readiness_went_false": not_ready_seen,
                "stubs_killed": len(killed), "restart_wait_s": round(recover, 2)}

    def fault_server_killed(self) -> dict:
        """tritonserver itself dies: ``s4c serve`` sees it and starts it again."""
        pid = self.tritonserver_pid()
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and (self.tritonserver_pid() in (None, pid) or not self.ready("s4c")):
            time.sleep(0.25)
        recover = time.perf_counter() - t
        ok = self.good_request()
        return {"name": "tritonserver killed (s4c serve restarts it)", "recovered": bool(ok),
                "seconds": round(recover, 2), "new_pid": self.tritonserver_pid()}

    def fault_sigterm(self) -> dict:
        sid = self.tritonserver_pid()  # its stubs keep this session id, so leftovers can be found after exit
        with ThreadPoolExecutor(2) as pool:
            inflight = [pool.submit(self.attempt, "s4c", self.mid, 120) for _ in range(2)]
            time.sleep(1.0)
            t = time.perf_counter()
            os.kill(self.proc.pid, signal.SIGTERM)
            time.sleep(1.0)
            new_refused = self.attempt("s4c", self.small, 30)[0] != "ok"
            outcomes = [f.result()[0] for f in inflight]
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
        exit_s = time.perf_counter() - t
        leftover = self.stub_pids("s4c", sid) + self.stub_pids("s4c_dual_phase", sid)
        return {"name": "SIGTERM with requests in flight", "recovered": bool(outcomes == ["ok", "ok"] and new_refused
                                                                             and code == 0 and not leftover),
                "seconds": round(exit_s, 2), "in_flight": outcomes, "new_request_refused": new_refused,
                "exit_code": code, "exit_within_timeout": exit_s < 20 + 15, "stubs_left": len(leftover)}

    # --- 3. bad inputs ----------------------------------------------------------------------------
    def bad_inputs(self) -> dict:
        tried = clean = 0
        details = []
        for item in write_corpus(self.work / "bad_inputs"):
            tried += 1
            if item.where == "client":
                other = save_nifti(self.work / "other.nii.gz", self.small, np.diag([2.5, 2.5, 2.5, 1.0]))
                res = subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--url", self.url, "--arterial",
                                      str(other), "--venous", str(item.path), "--out", str(self.work / "bad_out"),
                                      "--retries", "0"], capture_output=True, text=True, timeout=300)
                ok = res.returncode == 2 and item.needle in res.stderr
                msg = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
            else:
                c = self.g.InferenceServerClient(self.url)
                try:
                    c.infer(item.model, make_inputs(item.tensors), client_timeout=60)
                    ok, msg = False, "accepted"
                except Exception as exc:
                    msg = f"{exc.status()}: {exc.message()}"
                    ok = "INVALID_ARG" in str(exc.status()) and item.needle in exc.message()
                c.close()
            ready = self.ready("s4c") and self.ready("s4c_dual_phase")
            clean += bool(ok and ready)
            details.append({"name": item.name, "where": item.where, "typed_error": ok, "server_ready": ready,
                            "message": msg[:200]})
        return {"bad_inputs_tried": tried, "bad_inputs_clean": clean, "details": details}

    # --- 4. security ------------------------------------------------------------------------------
    def security(self) -> dict:
        checks = {}
        listening = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                addr, port = local.split(":")
                listening.add((".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16)))
        ours = {a for a, p in listening if p in (self.grpc, self.http, self.metrics)}
        checks["loopback_only"] = ours == {"127.0.0.1"}
        c = self.g.InferenceServerClient(self.url)
        admin = {grpc_admin_header(): self.key}
        refused = {}
        for name, call in (("model repository", lambda h: c.get_model_repository_index(headers=h)),
                           ("model config", lambda h: c.get_model_config("s4c", headers=h)),
                           ("statistics", lambda h: c.get_inference_statistics("s4c", headers=h)),
                           ("trace", lambda h: c.get_trace_settings(headers=h)),
                           ("logging", lambda h: c.get_log_settings(headers=h)),
                           ("shared memory", lambda h: c.get_system_shared_memory_status(headers=h))):
            try:
                call(None)
                refused[name] = False
            except Exception as exc:
                refused[name] = "restricted" in exc.message()
            try:
                call(admin)
                refused[name] = refused[name] and True
            except Exception:
                refused[name] = False  # must work with the key
        checks["admin_refused_without_key_allowed_with_it"] = refused
        try:
            c.load_model("s4c", headers=admin)
            checks["model_control_none"] = False
        except Exception as exc:
            checks["model_control_none"] = "explicit" in exc.message().lower() or "not allowed" in exc.message().lower()
        c.close()
        # PHI: a file name and header text that look like a patient's, through the client.
        src = self.work / f"{PHI}.nii.gz"
        save_nifti(src, self.small, np.diag([2.5, 2.5, 2.5, 1.0]))
        import nibabel as nib

        img = nib.load(str(src))
        img.header["descrip"] = PHI.encode()[:79]
        img.header["aux_file"] = b"MRN0042"
        nib.save(img, str(src))
        out = self.work / "phi_out"
        subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--url", self.url, "--ct", str(src), "--phase",
                        "venous", "--out", str(out)], capture_output=True, text=True, timeout=300, check=True)
        log_text = self.log.read_text(errors="replace")
        report = (out / "report.json").read_text()
        checks["no_phi_in_server_log"] = PHI not in log_text and "MRN0042" not in log_text
        checks["no_phi_in_report"] = PHI not in report and "MRN0042" not in report
        labels = nib.load(str(out / "venous_labels.nii.gz"))
        checks["output_header_text_cleared"] = (bytes(labels.header["descrip"]).strip(b"\0") == b""
                                                and bytes(labels.header["aux_file"]).strip(b"\0") == b""
                                                and len(labels.header.extensions) == 0)
        checks["output_affine_equals_input"] = bool(np.array_equal(load_nifti(out / "venous_labels.nii.gz").affine,
                                                                   load_nifti(src).affine))
        dockerfile = (ROOT / "Dockerfile").read_text()
        checks["dockerfile_non_root"] = "USER triton-server" in dockerfile
        checks["tls"] = "tests/test_server.py::test_tls_between_client_and_server (self-signed CA, s4c infer --ssl)"
        return checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--soak", type=float, default=None, metavar="MINUTES")
    ap.add_argument("--clients", type=int, default=None)
    ap.add_argument("--requests", type=int, default=None, help="per client")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reliability.json")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "reliability")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    suite = Suite(args.work, args.quick)
    suite.small = np.full((48, 64, 64), -100, np.int16)
    suite.mid = generate_case(8, abnormal=True, shape=(64, 128, 128), spacing=(2.5, 2.5, 2.5),
                              case_id="mid").venous.astype(np.int16)
    suite.big = generate_case(9, abnormal=True, shape=(96, 160, 160), spacing=(2.5, 2.5, 2.5),
                              case_id="rel").venous.astype(np.int16)
    suite.build_repository()
    result: dict = {"command": " ".join(["python", "benchmarks/reliability.py", *sys.argv[1:]])}
    result["startup_s"] = round(suite.start(), 2)
    try:
        clients = args.clients or 4
        per = args.requests or (6 if args.quick else 40)
        result["load"] = suite.load(clients, per, args.soak)
        for key in ("requests", "failures", "mismatches", "rss_growth_mb", "ledger_ok"):
            result[key] = result["load"][key]
        result.update(suite.bad_inputs())
        result["security"] = suite.security()
        faults = [suite.fault_hanging_batch(), suite.fault_queue_full(), suite.fault_client_timeout(),
                  suite.fault_stub_killed(), suite.fault_server_killed(), suite.fault_sigterm()]
        result["faults"] = faults
    finally:
        if suite.proc and suite.proc.poll() is None:
            suite.proc.send_signal(signal.SIGTERM)
            try:
                suite.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(suite.proc.pid, signal.SIGKILL)
    result["passed"] = bool(result["failures"] == 0 and result["mismatches"] == 0 and result["ledger_ok"]
                            and result["rss_growth_mb"] < 50 and all(f["recovered"] for f in result["faults"])
                            and result["bad_inputs_clean"] == result["bad_inputs_tried"]
                            and all(v is True or isinstance(v, str) for k, v in result["security"].items()
                                    if not isinstance(v, dict))
                            and all(result["security"]["admin_refused_without_key_allowed_with_it"].values()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("requests", "failures", "mismatches", "rss_growth_mb", "ledger_ok",
                                             "bad_inputs_tried", "bad_inputs_clean", "passed")}, indent=2))
    for f in result["faults"]:
        print(f"  fault {f['name']:36s} recovered={f['recovered']} {f['seconds']} s")
    print(f"wrote {args.out}")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
