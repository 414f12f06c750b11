"""Real scale (slow): GPT-2 small (124M) exports fp32/int8/int4 within this machine's memory; sizes as expected."""

from __future__ import annotations

import pytest

PARAMS_SMALL = 124_439_808  # GPT-2 small, tied LM head counted once


@pytest.mark.slow
def test_gpt2_small_exports(tmp_path):
    from edgevlm.export.scale_check import run

    rows = run(["small"], ["fp32", "int8", "int4"], tmp_path)["sizes"]["small"]["exports"]
    for quant, r in rows.items():
        assert r["peak_rss_mib"] < 12 * 1024, (quant, r)  # half of the 24 GB machine
        assert r["speed"]["decode_ms_per_token_median"] > 0
    fp32, int8, int4 = (rows[q]["files_mb"]["backbone.onnx"] for q in ("fp32", "int8", "int4"))
    assert fp32 * 1e6 >= 4 * PARAMS_SMALL  # every weight in fp32 (+ the transposed LM head copy)
    assert int4 < int8 < 0.5 * fp32  # int4 keeps the LM head fp32
    assert set(rows["fp32"]["files_mb"]) >= {
        "backbone.onnx",
        "tokenizer.json",
        "adapters/nlg.onnx_adapter",
        "adapters/mt.onnx_adapter",
    }
