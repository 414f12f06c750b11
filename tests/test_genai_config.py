"""Every bundle carries ``genai_config.json`` and ``tokenizer_config.json`` for onnxruntime-genai (issue 28): their
content checked against genai's documented configuration schema (onnxruntime.ai/docs/genai/reference/config.html)
and against the bundle's own graph. Not here: genai's generator on a bundle (the genai environment, `make
bench-peers`, was not built where this was written)."""

from __future__ import annotations

import json

import onnx
import pytest
from tokenizers import Tokenizer

from edgevlm.core import bundle

NUMBER = (int, float)
SCHEMA = {  # genai's configuration reference: key -> type, nested objects as dicts
    "model": {
        "bos_token_id": int, "context_length": int, "eos_token_id": int, "pad_token_id": int, "type": str,
        "vocab_size": int,
        "decoder": {
            "session_options": {"log_id": str, "provider_options": list},
            "filename": str, "head_size": int, "hidden_size": int, "num_attention_heads": int,
            "num_hidden_layers": int, "num_key_value_heads": int,
            "inputs": {"input_ids": str, "attention_mask": str, "past_key_names": str, "past_value_names": str},
            "outputs": {"logits": str, "present_key_names": str, "present_value_names": str},
        },
    },
    "search": {
        "diversity_penalty": NUMBER, "do_sample": bool, "early_stopping": bool, "length_penalty": NUMBER,
        "max_length": int, "min_length": int, "no_repeat_ngram_size": int, "num_beams": int,
        "num_return_sequences": int, "past_present_share_buffer": bool, "repetition_penalty": NUMBER,
        "temperature": NUMBER, "top_k": int, "top_p": NUMBER,
    },
}  # fmt: skip


def _matches(obj, schema, path="") -> None:
    assert isinstance(obj, dict) and set(obj) == set(schema), (path, sorted(obj), sorted(schema))
    for k, kind in schema.items():
        if isinstance(kind, dict):
            _matches(obj[k], kind, f"{path}.{k}")
        else:
            assert isinstance(obj[k], kind) and not (kind is int and isinstance(obj[k], bool)), (f"{path}.{k}", obj[k])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_genai_config_follows_the_schema_and_the_graph(mixed_bundles, arch):
    root = mixed_bundles[arch]("fp32")
    m = bundle.load_manifest(root)
    assert {"genai_config.json", "tokenizer_config.json"} <= set(m.files)  # listed and checksummed
    cfg = json.loads((root / "genai_config.json").read_text())
    _matches(cfg, SCHEMA)
    model, dec = cfg["model"], cfg["model"]["decoder"]
    graph = onnx.load(root / dec["filename"], load_external_data=False).graph
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input}
    outputs = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in graph.output}
    assert model["type"] == "llama" and dec["num_hidden_layers"] == m.backbone.n_layer
    for i in range(dec["num_hidden_layers"]):
        for key in ("past_key_names", "past_value_names"):
            shape = inputs[dec["inputs"][key] % i]
            assert shape[1] == dec["num_key_value_heads"] and shape[3] == dec["head_size"]
        assert {dec["outputs"]["present_key_names"] % i, dec["outputs"]["present_value_names"] % i} <= set(outputs)
    assert {dec["inputs"]["input_ids"], dec["inputs"]["attention_mask"]} <= set(inputs)
    assert outputs[dec["outputs"]["logits"]][-1] == model["vocab_size"]
    assert dec["hidden_size"] == m.backbone.n_embd and dec["num_attention_heads"] == m.backbone.n_head
    assert model["context_length"] == cfg["search"]["max_length"] == m.backbone.n_positions
    assert model["eos_token_id"] == m.tokenizer.eos_token_id and cfg["search"]["top_k"] == 1  # greedy, as edgevlm
    assert cfg["search"]["past_present_share_buffer"] == (m.backbone.kv_cache == "shared")
    tok_cfg = json.loads((root / "tokenizer_config.json").read_text())
    tok = Tokenizer.from_file(str(root / m.tokenizer.file))
    assert tok.token_to_id(tok_cfg["eos_token"]) == model["eos_token_id"]
    assert tok_cfg["model_max_length"] == m.backbone.n_positions
