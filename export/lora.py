"""peft LoRA directories in, LoRA tasks out (``edgevlm export --lora NAME=DIR``).

A peft LoRA directory holds ``adapter_config.json`` and ``adapter_model.safetensors`` (read with safetensors'
numpy reader: no unpickling). Each ``lora_A`` [r, in] / ``lora_B`` [out, r] pair of a targeted module becomes the
graph layout of :mod:`edgevlm.core.names`: A^T and ``scaling * B^T`` (peft's ``scaling = lora_alpha / r``,
``/ sqrt(r)`` with ``use_rslora``) on the graph projection holding that module. A projection that packs several
modules (Llama's q/k/v and gate/up) gets their ranks side by side, B block-diagonal. Every task's file covers
every LoRA input of the graph, each projection at its own rank (rank-1 zeros where the task targets nothing).
peft options the graph does not implement are refused in one line naming the option, and so is a LoRA of
another backbone (its ``base_model_name_or_path`` or a tensor's shape).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevlm.core import bundle, manifest, names
from edgevlm.core.errors import ConfigError, TaskError

CONFIG = "adapter_config.json"
TASK_FILE = "edgevlm_task.json"  # edgevlm.train.lora.TASK_FILE (export does not import the trainer's module)
GENERATION = ("max_new_tokens", "max_source_tokens")
WEIGHTS = "adapter_model.safetensors"
PACKED = {  # Llama-family module -> (the graph projection packing it, its part): export.arch.llama
    "q_proj": ("qkv_proj", 0),
    "k_proj": ("qkv_proj", 1),
    "v_proj": ("qkv_proj", 2),
    "gate_proj": ("gate_up_proj", 0),
    "up_proj": ("gate_up_proj", 1),
}
PARTS = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")
DEFAULT_MAX_NEW_TOKENS = 64
_FALSY = (None, False, "none", [], {}, "")


@dataclass
class LoraTask:
    """One peft LoRA as a task: graph-layout tensors (every LoRA input of the graph) and its rank."""

    name: str
    source: Path
    rank: int
    tensors: dict[str, np.ndarray]
    trainable_params: int
    task: dict  # edgevlm_task.json of `edgevlm train --method lora` (template, generation defaults), else {}

    def entry(self, vocab_size: int, eos: int, fingerprint: str, n_params: int) -> bundle.TaskEntry:
        """The manifest's task entry: method lora, the plain ``{input}`` template (no task tokens)."""
        return bundle.TaskEntry(
            adapter_file=f"{bundle.ADAPTER_DIR}/{self.name}{bundle.ADAPTER_SUFFIX}",
            bottleneck=self.rank,
            special_tokens=(),
            special_token_ids=(),
            template=self.task.get("template", "{input}"),
            eos_token_id=eos,
            generation=bundle.GenerationDefaults(
                self.task.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS), self.task.get("max_source_tokens")
            ),
            metric=self.task.get("metric"),
            trainable_params=self.trainable_params,
            trainable_share=round(100.0 * self.trainable_params / max(n_params, 1), 4),
            backbone_fingerprint=fingerprint,
            method="lora",
        )


def read_task(d: Path) -> dict:
    """``edgevlm_task.json`` (written by ``edgevlm train --method lora``): the prompt template and generation
    defaults the LoRA was trained with, checked like a manifest task entry; {} when absent (a foreign LoRA)."""
    path = d / TASK_FILE
    if not path.is_file():
        return {}
    obj = bundle.read_json(path)
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected an object with template and generation defaults")
    probe = {"adapter_file": "x", "bottleneck": 1, "special_tokens": [], "special_token_ids": [], "eos_token_id": 0}
    probe.update(method="lora", template=obj.get("template"), metric=obj.get("metric"))
    probe["generation"] = {k: obj.get(k) for k in GENERATION}
    try:
        manifest.TaskEntry.from_json(probe, str(path), 1, "")
    except bundle.BundleError as e:
        raise ConfigError(str(e)) from None
    return obj


def parse_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """``NAME=DIR`` pairs of ``--lora`` (ConfigError naming the bad one)."""
    out = []
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        if not sep or not manifest.TASK_NAME.match(name) or not path:
            raise ConfigError(f"--lora {spec!r}: expected NAME=PEFT_DIR (NAME of letters, digits, '_' or '-')")
        out.append((name, Path(path)))
    return out


def read_config(d: Path) -> dict:
    """``adapter_config.json``, refusing what the graph does not implement (one line naming the option)."""
    path = d / CONFIG
    if not path.is_file() or not (d / WEIGHTS).is_file():
        raise ConfigError(f"--lora {d}: expected a peft LoRA directory ({CONFIG} + {WEIGHTS})")
    cfg = bundle.read_json(path)
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        raise ConfigError(
            f"{path}: peft_type: expected 'LORA', got {cfg.get('peft_type') if isinstance(cfg, dict) else cfg!r}"
        )
    refused = {
        "use_dora": "DoRA",
        "modules_to_save": "modules_to_save (fully trained extra modules)",
        "rank_pattern": "per-module ranks",
        "alpha_pattern": "per-module alphas",
        "lora_bias": "LoRA biases",
        "layer_replication": "layer replication",
        "trainable_token_indices": "trainable tokens",
    }
    for key, what in refused.items():
        if cfg.get(key) not in _FALSY:
            raise ConfigError(f"{path}: {key}={cfg[key]!r} is not supported ({what}); export a plain LoRA")
    if cfg.get("bias", "none") != "none":
        raise ConfigError(f"{path}: bias={cfg['bias']!r} is not supported (trained biases); expected 'none'")
    for key in ("r", "lora_alpha"):
        if not isinstance(cfg.get(key), (int, float)) or isinstance(cfg.get(key), bool) or cfg[key] <= 0:
            raise ConfigError(f"{path}: {key}: expected a positive number, got {cfg.get(key)!r}")
    return cfg


def scaling(cfg: dict) -> float:
    """peft's LoRA scaling: ``lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with ``use_rslora``."""
    r = cfg["r"]
    return cfg["lora_alpha"] / (math.sqrt(r) if cfg.get("use_rslora") else r)


def model_name(name: str) -> str:
    """A checkpoint's name without its folder, case, ``.gguf``, GGUF quantization tag or edgevlm's conversion
    cache decoration: ``HuggingFaceTB/SmolLM2-135M-Instruct`` and ``gguf-SmolLM2-135M-Instruct.Q4_1-98362432`` are
    both ``smollm2-135m-instruct``."""
    n = Path(str(name).rstrip("/")).name.lower().removesuffix(".gguf")
    n = re.sub(r"-\d+$", "", n.removeprefix("gguf-")) if n.startswith("gguf-") else n
    return re.sub(r"\.(i?q\d\w*|f16|f32|bf16)$", "", n)


def check_base(cfg: dict, where: Path, backbone_names: set[str]) -> None:
    """``base_model_name_or_path`` names this backbone (:func:`model_name` of either side)."""
    base = cfg.get("base_model_name_or_path")
    if not base:
        return
    if model_name(base) not in {model_name(n) for n in backbone_names if n}:
        raise TaskError(
            f"{where / CONFIG}: base_model_name_or_path={base!r} is not this backbone "
            f"({sorted(n for n in backbone_names if n)[0]!r})"
        )


def read_pairs(d: Path) -> dict[str, dict[str, np.ndarray]]:
    """module path -> {"A": [r, in], "B": [out, r]} from the safetensors file (numpy reader, no pickle)."""
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(d / WEIGHTS))
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise ConfigError(f"{d / WEIGHTS}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in raw.items():
        if "lora_embedding" in key:
            raise ConfigError(f"{d / WEIGHTS}: {key}: embedding LoRA is not supported (target linear layers)")
        m = KEY.match(key)
        if not m:
            raise ConfigError(f"{d / WEIGHTS}: {key}: not a LoRA A/B weight (modules_to_save or another method?)")
        pairs.setdefault(m.group(1), {})[m.group(2)] = np.asarray(value, np.float32)
    for module, p in pairs.items():
        if set(p) != {"A", "B"} or p["A"].ndim != 2 or p["B"].shape[1:] != p["A"].shape[:1]:
            raise ConfigError(f"{d / WEIGHTS}: {module}: expected lora_A [r, in] and lora_B [out, r]")
    return pairs


def projections(model) -> dict[str, tuple[int, int]]:
    """Every graph projection a LoRA may target -> (in, out): GPT-2's Conv1Ds, Llama's packed/plain Linears."""
    out = {}
    if model.config.model_type == "gpt2":
        for i, blk in enumerate(model.transformer.h):
            for sub in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                w = blk.get_submodule(sub).weight  # Conv1D: [in, out]
                out[f"transformer.h.{i}.{sub}"] = (int(w.shape[0]), int(w.shape[1]))
        return out
    for i, layer in enumerate(model.model.layers):
        for parent, packed, plain in (("self_attn", "qkv_proj", "o_proj"), ("mlp", "gate_up_proj", "down_proj")):
            mod = layer.get_submodule(parent)
            parts = [mod.get_submodule(p) for p in PARTS[packed]]
            out[f"model.layers.{i}.{parent}.{packed}"] = (parts[0].in_features, sum(p.out_features for p in parts))
            lin = mod.get_submodule(plain)
            out[f"model.layers.{i}.{parent}.{plain}"] = (lin.in_features, lin.out_features)
    return out


def _place(module: str, model, projs: dict) -> tuple[str, int, int]:
    """(graph projection, column offset in it, the module's out) of a peft module path; ConfigError if none."""
    parent, _, leaf = module.rpartition(".")
    if model.config.model_type != "gpt2" and leaf in PACKED:
        packed, k = PACKED[leaf]
        mod = model.get_submodule(parent)
        outs = [mod.get_submodule(p).out_features for p in PARTS[packed]]
        return f"{parent}.{packed}", sum(outs[:k]), outs[k]
    if module not in projs:
        raise ConfigError(
            f"LoRA on {module!r} is not supported (the graph takes LoRA on attention and MLP projections)"
        )
    return module, 0, projs[module][1]


def to_graph(pairs: dict, cfg: dict, model, where: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """graph projection -> (A [in, R_p], B [R_p, out]) with peft's scaling in B (block-diagonal when packed);
    TaskError naming the module when a shape is not the backbone's."""
    projs, s = projections(model), scaling(cfg)
    parts: dict[str, list] = {}
    for module in sorted(pairs):
        proj, offset, width = _place(module, model, projs)
        a, b = pairs[module]["A"], pairs[module]["B"]  # [r, in], [out, r]
        if a.shape[1] != projs[proj][0] or b.shape[0] != width:
            raise TaskError(
                f"{where / WEIGHTS}: {module}: lora_A {list(a.shape)} / lora_B {list(b.shape)} do not fit this "
                f"backbone (in {projs[proj][0]}, out {width}): a LoRA of another model"
            )
        parts.setdefault(proj, []).append((offset, a, b))
    out = {}
    for proj, items in parts.items():
        n_in, n_out = projs[proj]
        rank = sum(a.shape[0] for _, a, _ in items)
        big_a, big_b, r0 = np.zeros((n_in, rank), np.float64), np.zeros((rank, n_out), np.float64), 0
        for offset, a, b in items:
            r = a.shape[0]
            big_a[:, r0 : r0 + r] = a.T
            big_b[r0 : r0 + r, offset : offset + b.shape[0]] = s * b.T.astype(np.float64)
            r0 += r
        out[proj] = (big_a.astype(np.float32), big_b.astype(np.float32))
    return out


def graph_tensors(per_proj: dict, union: dict[str, tuple[int, int]]) -> tuple[dict[str, np.ndarray], int]:
    """Every LoRA input of a graph targeting ``union`` (projection -> (in, out)), each projection at its own rank
    (rank-1 zeros where the task targets nothing). -> (name -> [1, in, R_p] / [1, R_p, out], the largest R_p)"""
    out = {}
    for proj, (n_in, n_out) in union.items():
        a, b = per_proj.get(proj, (np.zeros((n_in, 1), np.float32), np.zeros((1, n_out), np.float32)))
        out[names.lora_name(proj, "A")], out[names.lora_name(proj, "B")] = a[None], b[None]
    return out, max(a.shape[1] for a, _ in per_proj.values())


def load_lora_tasks(specs: list[str], bb, taken: set[str]) -> tuple[list[LoraTask], dict[str, tuple[int, int]]]:
    """The ``--lora NAME=DIR`` tasks for backbone ``bb`` and the graph projections they target together."""
    loaded = []
    for name, d in parse_specs(specs):
        if name in taken:
            raise TaskError(f"--lora {name}={d}: task {name!r} is already taken (task names must be unique)")
        taken.add(name)
        cfg = read_config(d)
        check_base(cfg, d, {bb.path.name, getattr(bb.model.config, "_name_or_path", "")})
        pairs = read_pairs(d)
        if not pairs:
            raise ConfigError(f"{d / WEIGHTS}: no LoRA weights")
        n = sum(p["A"].size + p["B"].size for p in pairs.values())
        loaded.append((name, d, to_graph(pairs, cfg, bb.model, d), n))
    projs = projections(bb.model)
    union = {p: projs[p] for p in projs if any(p in per for _, _, per, _ in loaded)}
    tasks = []
    for name, d, per, n in loaded:
        tensors, rank = graph_tensors(per, union)
        tasks.append(LoraTask(name, d, rank, tensors, n, read_task(d)))
    return tasks, union


class merged:
    """Context: ``task``'s LoRA merged into ``model``'s weights (``W += A @ B`` in graph layout), the touched
    weights restored exactly on exit; the PyTorch reference of the export-time self-check."""

    def __init__(self, model, task: LoraTask):
        self.model, self.task, self.saved = model, task, {}

    def _weights(self, proj: str) -> list[tuple[object, int, int, bool]]:
        """(torch weight, column offset, width, stored transposed) for a graph projection."""
        parent, _, leaf = proj.rpartition(".")
        if self.model.config.model_type == "gpt2":
            w = self.model.get_submodule(proj).weight  # Conv1D [in, out]
            return [(w, 0, w.shape[1], False)]
        mods = [self.model.get_submodule(f"{parent}.{p}") for p in PARTS.get(leaf, (leaf,))]
        offsets = np.cumsum([0] + [m.out_features for m in mods]).tolist()
        return [(m.weight, o, m.out_features, True) for m, o in zip(mods, offsets)]  # Linear [out, in]

    def __enter__(self):
        import torch

        with torch.no_grad():
            for name, a in self.task.tensors.items():
                if not name.endswith(".A"):
                    continue
                proj = name[len(names.LORA_PREFIX) : -2]
                delta = torch.from_numpy(a[0].astype(np.float64) @ self.task.tensors[name[:-1] + "B"][0])  # [in, out]
                for w, off, width, t in self._weights(proj):
                    self.saved.setdefault(id(w), (w, w.detach().clone()))
                    part = delta[:, off : off + width]
                    w += (part.T if t else part).to(w.dtype)
        return self.model

    def __exit__(self, *exc):
        import torch

        with torch.no_grad():
            for w, old in self.saved.values():
                w.copy_(old)


def lora_vs_merged(sess, vlm, bb, loras) -> dict[str, float]:
    """Max |logit diff| per LoRA task: the graph with the task's LoRA inputs vs PyTorch with the LoRA merged."""
    from edgevlm.core.prompts import encode_prompt

    from .verify import torch_vs_graph

    cfg, out = bb.sizes.to_dict(), {}
    for t in loras:
        prompt = encode_prompt(bb.tokenizer, t.task.get("template"), "the quick brown fox", (), cfg["vocab_size"])
        with merged(bb.model, t):
            out[t.name] = torch_vs_graph(sess, vlm, cfg, prompt, None, t.tensors)
    return out
