"""The demo end to end with a reduced step count: trains, exports, runs torch-free in a fresh process."""
from __future__ import annotations

import json

from edgevlm.bundle import load_manifest
from edgevlm.demo import TASKS, run_demo


def test_demo_end_to_end(tmp_path, capsys, tiny_dir):
    result = run_demo(tmp_path, steps=40, n_show=1, n_eval=4, progress=False, require_learned=False)
    out = capsys.readouterr().out
    device = result["device"]
    assert device["heavy_modules"] == [], "the on-device process imported torch/transformers/optimum"
    assert set(device["tasks"]) == set(TASKS)
    m = load_manifest(result["bundle"])  # verifies every checksum
    assert m["backbone"]["quantization"] == "int8" and set(m["tasks"]) == set(TASKS)
    assert device["decode_tok_s"] > 0 and device["task_switch_ms"] >= 0
    assert result["memory"]["five_models_rss_mb"] > result["memory"]["bundle_rss_mb"]
    for needle in ("untrained", "runtime peak RSS", "edgevlm run", "--backbone"):
        assert needle in out
    assert json.loads((tmp_path / "demo.json").read_text())["bundle"] == result["bundle"]
    # a second run reuses the cached adapters instead of training again
    run_demo(tmp_path, steps=40, n_show=0, n_eval=2, progress=False, require_learned=False)
    assert out.count("reusing") == 0 and capsys.readouterr().out.count("reusing") == len(TASKS)
