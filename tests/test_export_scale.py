"""Real scale (slow): GPT-2 small (124M) exports fp32/int8/int4 within this machine's memory; sizes as expected."""

from __future__ import annotations

import pytest

PARAMS_SMALL = 124_439_808  # GPT-2 small, tied LM head counted once
PARAMS_MEDIUM = 354_823_168


@pytest.mark.parametrize("size,params", [("gpt2-small", PARAMS_SMALL), ("gpt2-medium", PARAMS_MEDIUM)])
def test_random_backbone_sizes_are_the_real_models(size, params):
    """The one size table builds GPT-2 small/medium with the published parameter counts (on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from edgevlm.train.random_backbone import SIZES

    fields = dict(SIZES[size])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
    assert type(model).__name__ == "GPT2LMHeadModel" and sum(p.numel() for p in model.parameters()) == params


def test_random_backbone_unknown_size(tmp_path):
    from edgevlm.core.errors import ConfigError
    from edgevlm.train.random_backbone import save_random

    with pytest.raises(ConfigError, match=r"unknown model size 'gpt2-huge'; expected one of \['gpt2-small'"):
        save_random(tmp_path / "x", "gpt2-huge")
    assert not (tmp_path / "x").exists()


@pytest.mark.experiments
def test_decode_speed_on_the_tiny_bundle(tiny_bundle):
    """The scale check's timing loop runs the runtime's decoder on a real bundle (nlg adapter selected)."""
    from experiments.export_scale.scale_check import decode_speed

    r = decode_speed(tiny_bundle("fp32"), prompt_len=8, n_new=4, threads=1)
    assert r["prefill_ms"] > 0 and r["decode_ms_per_token"] > 0 and (r["prompt_len"], r["threads"]) == (8, 1)


@pytest.mark.slow
@pytest.mark.experiments
def test_gpt2_small_exports(tmp_path):
    from experiments.export_scale.scale_check import run

    rows = run(["small"], ["fp32", "int8", "int4"], tmp_path)["sizes"]["small"]["exports"]
    for quant, r in rows.items():
        assert r["peak_rss_mib"] < 12 * 1024, (quant, r)  # half of the 24 GB machine
        assert r["speed"]["decode_ms_per_token_median"] > 0
    # the graph and its external weights file (every export since 673b5f2 keeps its weights in backbone.onnx.data)
    fp32, int8, int4 = (
        sum(mb for name, mb in rows[q]["files_mb"].items() if name.startswith("backbone.onnx"))
        for q in ("fp32", "int8", "int4")
    )
    assert fp32 * 1e6 >= 4 * PARAMS_SMALL  # every weight in fp32 (+ the transposed LM head copy)
    assert int4 < int8 < 0.5 * fp32  # int4 keeps the LM head fp32
    assert set(rows["fp32"]["files_mb"]) >= {
        "backbone.onnx",
        "tokenizer.json",
        "adapters/nlg.onnx_adapter",
        "adapters/mt.onnx_adapter",
    }
