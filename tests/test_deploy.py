"""The Kubernetes and KServe manifests: validated offline against the Kubernetes schemas of a pinned
release (kubernetes-validate) and KServe's own CRD schemas (tests/schemas/kserve/), and kept equal to
s4c.contract, the repository configs and the server's flags."""

from __future__ import annotations

import copy
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from s4c import contract
from s4c.serving.server import MODELS

kv = pytest.importorskip("kubernetes_validate")
jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"
KSERVE = REPO / "deploy" / "kserve"
SCHEMAS = Path(__file__).resolve().parent / "schemas" / "kserve"
#: The Kubernetes release the manifests are checked against.
KUBERNETES_VERSION = "1.33.0"


def _docs(folder: Path) -> list[dict]:
    docs = []
    for f in sorted(folder.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def _kind(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return _docs(K8S)


@pytest.fixture(scope="module")
def kserve() -> list[dict]:
    return _docs(KSERVE)


def _closed(schema):
    """A CRD schema with every object that lists its properties closed to others: the API server's
    strict field validation (kubectl apply --validate=strict) rejects unknown fields the same way."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _kserve_validator(name: str):
    blob = json.loads(gzip.decompress((SCHEMAS / f"{name}.json.gz").read_bytes()))
    assert blob["source"].startswith("github.com/kserve/kserve ")
    return blob, jsonschema.Draft7Validator(_closed(blob["openAPIV3Schema"]))


def test_kubernetes_manifests_validate_strictly(k8s):
    kinds = sorted(d["kind"] for d in k8s)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
                     "Service", "Service"]
    for doc in k8s:
        kv.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_validation_can_fail(k8s):
    bad = copy.deepcopy(_kind(k8s, "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}  # misspelt
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kind,schema", [("InferenceService", "inferenceservice-v1beta1"),
                                         ("ServingRuntime", "servingruntime-v1alpha1")])
def test_kserve_manifests_validate_against_kserve_schemas(kserve, kind, schema):
    blob, validator = _kserve_validator(schema)
    doc = _kind(kserve, kind)
    assert doc["apiVersion"] == f"{blob['group']}/{blob['version']}" and blob["kind"] == kind
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    bad = copy.deepcopy(doc)
    bad["spec"]["bogusField"] = 1
    assert any("bogusField" in e.message for e in validator.iter_errors(bad))


def test_kserve_uses_the_triton_format_and_the_same_bounds(k8s, kserve):
    isvc = _kind(kserve, "InferenceService")
    runtime = _kind(kserve, "ServingRuntime")
    hpa = _kind(k8s, "HorizontalPodAutoscaler")
    pred = isvc["spec"]["predictor"]
    assert pred["model"]["modelFormat"]["name"] == "triton" and pred["model"]["protocolVersion"] == "v2"
    assert pred["model"]["runtime"] == runtime["metadata"]["name"]
    assert {"name": "triton", "version": "2", "autoSelect": True, "priority": 1} in runtime["spec"][
        "supportedModelFormats"]
    assert "v2" in runtime["spec"]["protocolVersions"]
    assert (pred["minReplicas"], pred["maxReplicas"]) == (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])


def _containers(k8s, kserve) -> dict[str, tuple[dict, dict]]:
    """Every container with its pod spec: name -> (container, pod spec)."""
    dep = _kind(k8s, "Deployment")["spec"]["template"]["spec"]
    pred = _kind(kserve, "InferenceService")["spec"]["predictor"]
    runtime = _kind(kserve, "ServingRuntime")["spec"]
    out = {f"deployment/{c['name']}": (c, dep) for c in dep["containers"] + dep.get("initContainers", [])}
    out.update({f"kserve/{c['name']}": (c, pred) for c in pred.get("initContainers", [])})
    # The runtime's container is merged with the predictor's model spec into one container.
    merged = {**runtime["containers"][0], **{k: v for k, v in pred["model"].items() if k == "volumeMounts"}}
    out["kserve/kserve-container"] = (merged, pred)
    return out


def test_security_context_non_root_read_only(k8s, kserve):
    for name, (c, pod) in _containers(k8s, kserve).items():
        sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
        assert sc.get("runAsNonRoot") is True, name
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name
    for name in ("deployment/tritonserver", "kserve/kserve-container"):
        c, pod = _containers(k8s, kserve)[name]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        writable = {p for p, m in mounts.items() if not m.get("readOnly")}
        # The engine cache (in the repository volume), /tmp, and the Python backend's shared memory.
        assert writable == {"/models", "/tmp", "/dev/shm"}, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
        assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"] == "s4c-model-repository"


def test_secrets_carry_the_admin_key_and_the_certificate(k8s, kserve):
    for name in ("deployment/tritonserver", "kserve/kserve-container"):
        c, pod = _containers(k8s, kserve)[name]
        env = {e["name"]: e for e in c["env"]}
        assert env["S4C_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s4c-admin-key", "key": "admin-key"}
        tls = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert tls["secret"]["secretName"] == "s4c-tls"
        args = c["args"]
        assert args[args.index("--tls-cert") + 1] == "/etc/s4c/tls/tls.crt"  # kubernetes.io/tls keys
        assert args[args.index("--tls-key") + 1] == "/etc/s4c/tls/tls.key"


def test_the_entrypoint_accepts_the_manifests_arguments(k8s, kserve):
    """The container args go to `s4c serve` (docker/entrypoint.sh passes "$@"): each flag exists."""
    help_text = subprocess.run([sys.executable, "-m", "s4c.cli", "serve", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "exec s4c serve" in (REPO / "docker" / "entrypoint.sh").read_text()
    for name in ("deployment/tritonserver", "kserve/kserve-container"):
        c, _ = _containers(k8s, kserve)[name]
        for flag in (a for a in c["args"] if a.startswith("--")):
            assert re.search(rf"\s{re.escape(flag)}\b", help_text), f"{name}: s4c serve has no {flag}"


def _probe_models(probe: dict) -> set[str]:
    script = probe["exec"]["command"][-1]
    m = re.search(r"for m in ([\w ]+); do curl -sf -o /dev/null http://127\.0\.0\.1:(\d+)/v2/models/\$m/ready", script)
    assert m, script
    assert int(m.group(2)) == contract.HTTP_PORT
    return set(m.group(1).split())


def test_ports_models_and_probes_follow_the_contract(k8s):
    dep = _kind(k8s, "Deployment")["spec"]["template"]["spec"]
    c = dep["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": contract.HTTP_PORT, "grpc": contract.GRPC_PORT, "metrics": contract.METRICS_PORT}
    svc = _kind(k8s, "Service", "s4c-triton")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == ports
    assert _kind(k8s, "Deployment")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        contract.METRICS_PORT)
    # Readiness and liveness on every model's own ready endpoint.
    assert _probe_models(c["readinessProbe"]) == _probe_models(c["livenessProbe"]) == set(MODELS)


def test_autoscaler_scales_on_queue_time_with_its_adapter_rule(k8s):
    hpa = _kind(k8s, "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "avg_time_queue_us"
    assert hpa["spec"]["scaleTargetRef"]["name"] == _kind(k8s, "Deployment")["metadata"]["name"]
    rules = yaml.safe_load(_kind(k8s, "ConfigMap", "s4c-prometheus-adapter-rules")["data"]["config.yaml"])["rules"]
    rule = next(r for r in rules if r["name"]["as"] == "avg_time_queue_us")
    q = rule["metricsQuery"]
    assert "delta(nv_inference_queue_duration_us" in q and "delta(nv_inference_request_success" in q
    models = set(re.findall(r'model=~"([^"]+)"', q))
    assert models == {f"{contract.PIPELINE_MODEL}|{contract.DUAL_PHASE_MODEL}"}
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def _config_tensors(model: str) -> tuple[set[str], set[str]]:
    text = (REPO / "model_repository" / model / "config.pbtxt").read_text()
    sections = {}
    for section in ("input", "output"):
        block = re.search(rf"^{section} \[(.*?)^\]", text, re.S | re.M).group(1)
        sections[section] = set(re.findall(r'name: "(\w+)"', block))
    return sections["input"], sections["output"]


def test_contract_configmap_equals_the_contract_and_the_configs(k8s):
    data = _kind(k8s, "ConfigMap", "s4c-contract")["data"]
    assert (int(data["grpc-port"]), int(data["http-port"]), int(data["metrics-port"])) == (
        contract.GRPC_PORT, contract.HTTP_PORT, contract.METRICS_PORT)
    assert data["dual-phase-model"] == contract.DUAL_PHASE_MODEL and data["phase-model"] == contract.PIPELINE_MODEL
    for key, model in (("dual-phase", contract.DUAL_PHASE_MODEL), ("phase", contract.PIPELINE_MODEL)):
        inputs, outputs = _config_tensors(model)
        assert set(data[f"{key}-inputs"].split(",")) == inputs, key
        assert set(data[f"{key}-outputs"].split(",")) == outputs, key
    dual = {t for names in contract.DUAL_INPUTS.values() for t in names}
    assert set(data["dual-phase-inputs"].split(",")) == dual
    assert {contract.CT, contract.SPACING, contract.PHASE, contract.AFFINE} == set(data["phase-inputs"].split(","))
