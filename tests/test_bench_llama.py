"""The benchmarks on a Llama-family backbone (the tiny random Llama): bytes read per token through the architecture
records (tied vs untied embeddings), the fp32 graph reading what PyTorch reads, and the PyTorch engine loading the
backbone's own model class and decoding exact token counts with the same prompt ids as the runtime."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def llama_bundle(tmp_path_factory, tiny_llama_dir):
    from edgevlm.export import export_bundle

    return export_bundle(
        str(tiny_llama_dir), [], "fp32", out=tmp_path_factory.mktemp("bench-llama") / "b", progress=False
    )


def test_torch_weight_bytes_tied_and_untied(tmp_path, tiny_llama_dir):
    from llama_helpers import make_tiny_llama

    from edgevlm.benchmarks.bandwidth import torch_weight_bytes
    from edgevlm.train.backbone import load_backbone

    tied = load_backbone(tiny_llama_dir).model
    n = sum(p.numel() for p in tied.parameters())
    assert torch_weight_bytes(tied) == {"bytes_per_token": 4 * n, "gather_only_bytes": 0, "initializers": 3 * 9 + 2}
    untied = load_backbone(make_tiny_llama(tmp_path / "untied", tie_word_embeddings=False)).model
    table = untied.get_input_embeddings().weight.numel()
    got = torch_weight_bytes(untied)
    assert got["gather_only_bytes"] == 4 * table  # the input table is looked up, the separate head read whole
    assert got["bytes_per_token"] == 4 * (sum(p.numel() for p in untied.parameters()) - table)


def test_llama_bundle_reads_the_same_weights_as_pytorch(llama_bundle, tiny_llama_dir):
    from edgevlm.benchmarks.bandwidth import onnx_weight_bytes, torch_weight_bytes
    from edgevlm.train.backbone import load_backbone

    g = onnx_weight_bytes(llama_bundle / "backbone.onnx")
    t = torch_weight_bytes(load_backbone(tiny_llama_dir).model)
    assert abs(g["bytes_per_token"] - t["bytes_per_token"]) / t["bytes_per_token"] < 0.01, (g, t)


def test_pytorch_engine_runs_the_llama_class(llama_bundle, tiny_llama_dir):
    from edgevlm.benchmarks.engines import Engine

    prompts = {}
    for e in (Engine("edgevlm", "fp32", llama_bundle, 1, None), Engine("pytorch", "fp32", tiny_llama_dir, 1)):
        e.load()
        p = e.prompt(20)
        prompts[e.kind] = p if isinstance(p, list) else p[0].tolist()
        assert len(prompts[e.kind]) == 20 and e.generate(p, 9) == 9
    assert type(e.model).__name__ == "LlamaForCausalLM"
    assert prompts["edgevlm"] == prompts["pytorch"]


@pytest.mark.experiments
def test_decode_speed_times_every_bundle_and_thread_count(llama_bundle):
    from edgevlm.core.errors import ConfigError
    from experiments.graph_speed.decode_speed import _bundles, measure

    rows = measure({"fp32": llama_bundle}, [1, 2], None, prompt=8, new=48, reps=2)
    assert [(r["bundle"], r["threads"]) for r in rows] == [("fp32", 1), ("fp32", 2)]
    assert all(len(r["reps"]) == 2 and r["tokens_per_s"] > 0 for r in rows)
    with pytest.raises(ConfigError, match="LABEL=BUNDLE_DIR"):
        _bundles(["no-equals-sign"])
