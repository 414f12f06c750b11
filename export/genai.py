"""``genai_config.json`` and ``tokenizer_config.json`` in every bundle: what onnxruntime-genai's generator
(Python, C#, Java, Objective-C) reads to open a model folder (its configuration reference,
onnxruntime.ai/docs/genai/reference/config.html).

The bundle's graph already uses genai's input/output names (``input_ids``, ``attention_mask``,
``past_key_values.%d.key``, ``present.%d.key``, ``logits``); the optional edgevlm inputs (adapters,
``task_embeddings``, ``adapter_columns``, ``logits_to_keep``) keep their identity defaults when genai does not
feed them, and an ``.onnx_adapter`` file can be activated through genai's ``Adapters`` (task tokens fed as ids
``vocab_size + k``). Decoding settings are greedy, edgevlm's default. Everything is derived from the manifest, so
the files cannot disagree with it.
"""

from __future__ import annotations

from edgevlm.core import bundle, names

CONFIG = "genai_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
# edgevlm architecture -> genai model type. Every edgevlm graph has the same decoder interface (input_ids,
# attention_mask, past/present pairs; positions from the mask), which genai runs as its generic decoder-only
# model ("llama"); its "gpt2" type also wants a position_ids input the graph does not have (genai 0.15:
# "Model input was not found").
TYPES = {"gpt2": "llama", "llama": "llama"}


def genai_config(m: bundle.Manifest) -> dict:
    """genai's configuration of the bundle's plain backbone (see the module docstring)."""
    b = m.backbone
    eos = m.tokenizer.eos_token_id
    decoder = {
        "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
        "filename": b.file,
        "head_size": b.head_dim,
        "hidden_size": b.n_embd,
        "inputs": {
            "input_ids": names.INPUT_IDS,
            "attention_mask": names.ATTENTION_MASK,
            "past_key_names": names.past_key("%d"),
            "past_value_names": names.past_value("%d"),
        },
        "outputs": {
            "logits": names.LOGITS,
            "present_key_names": names.present_key("%d"),
            "present_value_names": names.present_value("%d"),
        },
        "num_attention_heads": b.n_head,
        "num_hidden_layers": b.n_layer,
        "num_key_value_heads": b.n_kv_head,
    }
    model = {
        "bos_token_id": eos,
        "context_length": b.n_positions,
        "decoder": decoder,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "type": TYPES[b.architecture],
        "vocab_size": b.vocab_size,
    }
    search = {
        "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
        "max_length": b.n_positions, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
        "num_return_sequences": 1, "past_present_share_buffer": b.kv_cache == "shared", "repetition_penalty": 1.0,
        "temperature": 1.0, "top_k": 1, "top_p": 1.0,
    }  # fmt: skip
    return {"model": model, "search": search}


def tokenizer_config(m: bundle.Manifest, eos_token: str, chat_template: str | None) -> dict:
    """The Hugging Face tokenizer settings genai's tokenizer reads beside ``tokenizer.json`` (byte-level BPE), with
    the model's own Jinja chat template when it has one (genai's ``apply_chat_template``)."""
    extra = {"chat_template": chat_template} if chat_template else {}
    return {
        **extra,
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": eos_token,
        "eos_token": eos_token,
        "add_bos_token": False,
        "model_max_length": m.backbone.n_positions,
    }


def write(root, m: bundle.Manifest, eos_token: str, chat_template: str | None) -> None:
    """Both files into the bundle directory ``root`` (before the manifest lists and checksums its files)."""
    import json

    from edgevlm.core.config import atomic_write_text

    atomic_write_text(root / CONFIG, json.dumps(genai_config(m), indent=2) + "\n")
    atomic_write_text(
        root / TOKENIZER_CONFIG, json.dumps(tokenizer_config(m, eos_token, chat_template), indent=2) + "\n"
    )
