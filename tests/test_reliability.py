"""The CI subset of the reliability suite: load, every fault, the bad-input corpus and the security
checks against a real server started with ``s4c serve`` (benchmarks/reliability.py --quick)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.server
def test_reliability_quick(tmp_path):
    out = tmp_path / "reliability.json"
    res = subprocess.run([sys.executable, "benchmarks/reliability.py", "--quick", "--out", str(out), "--work",
                          str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert out.exists(), res.stdout[-3000:] + res.stderr[-3000:]
    r = json.loads(out.read_text())
    for key in ("requests", "failures", "mismatches", "rss_growth_mb", "ledger_ok", "faults", "bad_inputs_tried",
                "bad_inputs_clean"):
        assert key in r, key
    assert r["failures"] == 0 and r["mismatches"] == 0 and r["ledger_ok"], r["load"]
    assert r["bad_inputs_clean"] == r["bad_inputs_tried"] >= 20, [d for d in r["details"] if not d["typed_error"]]
    assert {f["name"] for f in r["faults"] if not f["recovered"]} == set(), r["faults"]
    assert r["security"]["loopback_only"] and r["security"]["model_control_none"]
    assert all(r["security"]["admin_refused_without_key_allowed_with_it"].values())
    assert r["security"]["no_phi_in_server_log"] and r["security"]["no_phi_in_report"]
    assert res.returncode == 0, res.stdout[-2000:]
