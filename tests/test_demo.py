"""The demo end to end with a reduced step count: trains, exports, runs torch-free in a fresh process."""

from __future__ import annotations

import json

import pytest

from edgevlm.apps.demo import TASKS, learned, run_demo
from edgevlm.core.bundle import load_manifest


def test_demo_end_to_end(tmp_path, capsys, tiny_dir):
    result = run_demo(tmp_path, steps=40, n_show=1, n_eval=4, progress=False, require_learned=False)
    out = capsys.readouterr().out
    device = result["device"]
    assert device["heavy_modules"] == [], "the on-device process imported torch/transformers/optimum"
    assert set(device["tasks"]) == set(TASKS)
    m = load_manifest(result["bundle"])  # verifies every checksum
    assert m.backbone.quantization == "int8" and set(m.tasks) == set(TASKS)
    assert device["decode_tok_s"] > 0 and device["task_switch_ms"] >= 0
    assert result["memory"]["five_models_rss_mb"] > result["memory"]["bundle_rss_mb"]
    for needle in ("untrained", "runtime peak RSS", "edgevlm run", "--backbone"):
        assert needle in out
    assert json.loads((tmp_path / "demo.json").read_text())["bundle"] == result["bundle"]
    # a second run reuses the cached adapters instead of training again
    run_demo(tmp_path, steps=40, n_show=0, n_eval=2, progress=False, require_learned=False)
    assert out.count("reusing") == 0 and capsys.readouterr().out.count("reusing") == len(TASKS)


@pytest.mark.parametrize(
    "trained, untrained, ok",
    [
        ({"value": 81.0, "exact": 60.0}, {"value": 1.4, "exact": 0.0}, True),
        (
            {"value": 65.0, "exact": 2.0},
            {"value": 46.0, "exact": 0.0},
            False,
        ),  # the format learned, the content guessed
        ({"value": 40.0, "exact": 40.0}, {"value": 35.0, "exact": 0.0}, False),  # not 10 points above the baseline
        ({"value": 92.0, "exact": 40.0}, {"value": 82.0, "exact": 0.0}, True),  # high baseline: half-way to 100
        ({"value": 90.0, "exact": 40.0}, {"value": 82.0, "exact": 0.0}, False),
        ({"value": 90.0, "exact": 40.0}, {"value": 50.0, "exact": 25.0}, False),  # exact match barely above untrained
    ],
)
def test_learned_needs_metric_gain_and_exact_outputs(trained, untrained, ok):
    assert learned(trained, untrained) is ok
