"""``export_bundle``: backbone + trained adapters -> a bundle directory, written to a temp dir and renamed into place."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from edgevlm import __version__, bundle
from edgevlm.config import atomic_write_text
from edgevlm.errors import ConfigError, ExportError

from .adapters import TaskAdapter, check_fingerprints, load_task_adapters, read_ort_adapter, write_ort_adapter
from .graph import OPSET, build_graph, check_config, graph_inputs, op_counts
from .quantize import quantize

EXTERNAL_DATA_BYTES = 1 << 30  # graphs with more weight bytes keep them in backbone.onnx.data
CHECK_TOL = 1e-3  # export-time fp32 self-check (tests hold the graph to 1e-4)


def export_bundle(backbone, adapters, quant: str = "fp32", out=None, force: bool = False, progress: bool = True,
                  fuse: bool = True, check: bool = True) -> Path:
    """Export ``backbone`` ('tiny' or a local HF GPT-2 dir) with the task ``adapters`` into the bundle directory ``out``.

    ``quant`` is fp32, int8 or int4 (backbone only; adapters stay float). Bad
    input fails before any work; the bundle appears atomically (temp dir +
    rename) and replaces an existing ``out`` only with ``force``. ``fuse``
    uses ONNX Runtime's fused kernels (attention, LayerNorm, GELU); ``check``
    compares the fp32 graph with PyTorch before quantizing. Returns ``out``.
    """
    from tqdm.auto import tqdm

    from edgevlm.backbone import load_backbone

    out = _check_args(quant, out, force)
    tasks = load_task_adapters(list(adapters))
    log: dict = {"edgevlm_version": __version__, "quantization": quant, "timings_s": {}}
    bar = tqdm(total=6, desc=f"export {quant}", unit="stage", disable=not progress)
    try:
        with _stage(log, "load", bar):
            bb = load_backbone(backbone)
            check_config(bb.model.config)
            check_fingerprints(tasks, bb.fingerprint)
        model = _graph(bb, tasks, quant, fuse, check, log, bar)
        with _stage(log, "write", bar):
            write_bundle(out, model, bb, tasks, quant, log, force, large=_weight_bytes(model) > EXTERNAL_DATA_BYTES)
    except BaseException:
        bar.leave = False  # the error line stays alone on the terminal
        raise
    finally:
        bar.close()
    return out


def _graph(bb, tasks: list[TaskAdapter], quant: str, fuse: bool, check: bool, log: dict, bar) -> onnx.ModelProto:
    """Build and validate the decoder graph, fuse, self-check and quantize it (op counts of each step go to ``log``)."""
    with _stage(log, "graph", bar):
        model = build_graph(bb.model)
        validate_graph(model)
        _check_adapters(tasks, model, bb.model.config.n_embd)
        log["op_counts"] = {"graph": op_counts(model)}
    with _stage(log, "fuse", bar):
        if fuse:
            from .fuse import fuse_graph

            del model
            model = fuse_graph(build_graph(bb.model, fused_attention=True), bb.model.config)
        log["op_counts"]["fused"] = op_counts(model)
    with _stage(log, "check", bar):
        if check:
            log["fp32_max_abs_logit_diff"] = self_check(model, bb, tasks)
    with _stage(log, "quantize", bar):
        model = quantize(model, quant)
        log["op_counts"]["final"] = op_counts(model)
    return model


def _check_args(quant: str, out, force: bool) -> Path:
    if quant not in bundle.QUANT_MODES:
        raise ConfigError(f"--quant {quant!r}: expected one of {bundle.QUANT_MODES}")
    if out is None:
        raise ConfigError("--out: an output bundle directory is required")
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"--out {out}: already exists (pass --force to replace it)")
    if out.exists() and not (out / bundle.MANIFEST).is_file() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: exists and is not an edgevlm bundle; refusing to replace it even with --force")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: parent directory {out.parent} does not exist")
    return out


class _stage:
    """Time a stage into ``log['timings_s']`` and advance the progress bar."""

    def __init__(self, log: dict, name: str, bar):
        self.log, self.name, self.bar = log, name, bar

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.bar.set_postfix(stage=self.name)

    def __exit__(self, *exc):
        self.log["timings_s"][self.name] = round(time.perf_counter() - self.t0, 3)
        self.bar.update(1)


def validate_graph(model: onnx.ModelProto) -> None:
    """onnx.checker plus strict shape inference (an in-memory check for graphs under 2 GB)."""
    try:
        if model.ByteSize() < (2 << 30) - (1 << 20):
            onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"exported graph failed ONNX validation: {str(e).splitlines()[0]}") from None


def _check_adapters(tasks: list[TaskAdapter], model: onnx.ModelProto, n_embd: int) -> dict[str, tuple[int, int]]:
    """Every task's tensors fit the graph's adapter inputs (same check the runtime does at load)."""
    gi = graph_inputs(model)
    return {t.name: bundle.check_adapter_against_graph(t.shapes(), gi, n_embd, str(t.source)) for t in tasks}


def _weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or 4 * int(np.prod(t.dims)) for t in model.graph.initializer)


def self_check(model: onnx.ModelProto, bb, tasks: list[TaskAdapter]) -> dict[str, float]:
    """fp32 graph vs PyTorch VLM on a short prompt (prefill + 3 cached steps), no task and every task; ExportError if off."""
    import torch

    from edgevlm.model import VLM
    from edgevlm.prompting import encode_prompt

    from .verify import session, torch_vs_graph

    vlm = VLM(bb.model).eval()
    cfg = bb.config_dict
    sess = session(model)
    text = "the quick brown fox"
    diffs = {"<none>": torch_vs_graph(sess, vlm, cfg, encode_prompt(bb.tokenizer, "", text, [], cfg["vocab_size"]), None)}
    for t in tasks:
        vlm.add_task(t.meta.task).load_tensors({k: torch.from_numpy(v) for k, v in t.tensors.items()}, str(t.source))
        prompt = encode_prompt(bb.tokenizer, t.meta.task.template, text, t.meta.task.special_tokens, cfg["vocab_size"])
        diffs[t.name] = torch_vs_graph(sess, vlm, cfg, prompt, t.name, t.tensors)
    worst = max(diffs.values())
    if not worst <= CHECK_TOL:
        raise ExportError(f"exported graph disagrees with PyTorch: max |logit diff| {worst:.2e} > {CHECK_TOL:.0e} ({diffs})")
    return {k: float(f"{v:.3e}") for k, v in diffs.items()}


def write_bundle(out: Path, model: onnx.ModelProto, bb, tasks: list[TaskAdapter], quant: str, log: dict,
                 force: bool, large: bool) -> None:
    """Write every file into a temp dir next to ``out``, check it, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        data = bundle.BACKBONE_FILE + ".data" if large else None
        onnx.save_model(model, tmp / bundle.BACKBONE_FILE, save_as_external_data=large, all_tensors_to_one_file=True,
                        location=data, size_threshold=1024)
        onnx.checker.check_model(str(tmp / bundle.BACKBONE_FILE))
        bb.tokenizer.save(str(tmp / bundle.TOKENIZER_FILE))
        (tmp / bundle.ADAPTER_DIR).mkdir()
        gi = graph_inputs(model)
        sizes = {}
        for t in tasks:
            path = tmp / bundle.ADAPTER_DIR / f"{t.name}{bundle.ADAPTER_SUFFIX}"
            write_ort_adapter(path, t.tensors)
            back = {k: list(v.shape) for k, v in read_ort_adapter(path).items()}
            sizes[t.name] = bundle.check_adapter_against_graph(back, gi, bb.model.config.n_embd, str(path))
        m = manifest(bb, tasks, sizes, quant, data, log)
        m["files"] = {p.relative_to(tmp).as_posix(): bundle.sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        bundle.validate_manifest(m, tmp)
        atomic_write_text(tmp / bundle.MANIFEST, json.dumps(m, indent=2) + "\n")
        _publishable(tmp)
        _replace_dir(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def manifest(bb, tasks: list[TaskAdapter], sizes: dict, quant: str, data_file: str | None, log: dict) -> dict:
    """The manifest (without ``files``): backbone, tokenizer, io names, per-task settings and the export log."""
    c = bb.model.config
    backbone = {"file": bundle.BACKBONE_FILE, "external_data": data_file, **bb.config_dict, "quantization": quant,
                "layer_norm_epsilon": c.layer_norm_epsilon, "activation_function": c.activation_function,
                "fingerprint": bb.fingerprint, "opset": OPSET, "source": str(bb.path)}
    return {"schema_version": bundle.SCHEMA_VERSION, "backbone": backbone,
            "tokenizer": {"file": bundle.TOKENIZER_FILE, "eos_token_id": bb.eos_token_id},
            "io": bundle.io_spec(c.n_layer),
            "tasks": {t.name: task_entry(t, sizes[t.name], c.vocab_size, bb.eos_token_id) for t in tasks},
            "export_log": log}


def task_entry(t: TaskAdapter, size: tuple[int, int], vocab_size: int, eos: int) -> dict:
    cfg = t.meta.task
    bottleneck, n_task_tokens = size
    return {"adapter_file": f"{bundle.ADAPTER_DIR}/{t.name}{bundle.ADAPTER_SUFFIX}", "bottleneck": bottleneck,
            "n_task_tokens": n_task_tokens, "special_tokens": list(cfg.special_tokens),
            "special_token_ids": [vocab_size + k for k in range(len(cfg.special_tokens))],
            "template": cfg.template, "eos_token_id": eos, "metric": cfg.metric,
            "generation": {"max_new_tokens": cfg.max_new_tokens, "greedy": True, "max_source_tokens": cfg.max_source_tokens,
                           "max_target_tokens": cfg.max_target_tokens},
            "trainable_params": t.meta.trainable_params, "trainable_share": t.meta.trainable_share}


def _publishable(root: Path) -> None:
    """Usual permissions (umask) instead of mkdtemp's/mkstemp's owner-only ones."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def _replace_dir(tmp: Path, out: Path, force: bool) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` (only with ``force``) is moved aside first, then deleted."""
    if out.exists():
        if not force:
            raise ConfigError(f"--out {out}: already exists (pass --force to replace it)")
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / "bundle")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
