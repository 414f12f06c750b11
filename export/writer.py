"""``export_bundle``: backbone + trained adapters -> a bundle directory (written to a temp dir, renamed into place)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import onnx

from edgevlm import __version__
from edgevlm.core import bundle, fsutil, graphio, identity, onnxproto
from edgevlm.core.config import atomic_write_text
from edgevlm.core.errors import ConfigError, ExportError

from . import genai
from .adapters import (
    TaskAdapter,
    check_fingerprints,
    load_task_adapters,
    read_ort_adapter,
    recorded_backbone,
    write_ort_adapter,
)
from .chat import chat_turns, plain_chat_template
from .graph import build_graph, check_config, declared_io, graph_inputs, kv_cache_mode, op_counts
from .lora import load_lora_tasks, lora_vs_merged
from .quantize import quantize

WORK_DIR = ".work"  # intermediate graphs, inside the temporary bundle directory
MATRIX_BYTES = 1 << 20  # fusion runs with tensors over this size (weight matrices, embeddings) left on disk
CHECK_TOL = 1e-3  # export-time fp32 self-check (tests hold the graph to 1e-4)
LOG = logging.getLogger("edgevlm.export")
LOG.setLevel(logging.WARNING)  # shown even though the CLI quiets the root logger (library noise) to errors


def export_bundle(
    backbone,
    adapters,
    quant: str = "fp32",
    out=None,
    force: bool = False,
    progress: bool = True,
    fuse: bool = True,
    check: bool = True,
    ort_format: bool = False,
    lora=(),
) -> Path:
    """Export ``backbone`` (a built-in name, a local HF directory of a registered architecture or a .gguf file;
    None: the one the adapters record, :func:`recorded_backbone`) with the task ``adapters`` into ``out``.

    ``quant`` is fp32, int8 or int4 (backbone only; adapters stay float). Bad
    input fails before any work; the bundle appears atomically (temp dir +
    rename) and replaces an existing ``out`` only with ``force``. ``fuse``
    uses ONNX Runtime's fused kernels (attention, LayerNorm, GELU); ``check``
    compares the fp32 graph with PyTorch before quantizing; ``ort_format`` also writes the graph in ONNX
    Runtime's ``.ort`` format with its required-operators list (:mod:`.ortformat`). ``lora``: ``NAME=PEFT_DIR``
    specs of peft LoRA adapters to add as tasks (:mod:`export.lora`; the graph then has LoRA inputs). Returns
    ``out``.
    """
    from tqdm.auto import tqdm

    from edgevlm.train.backbone import load_backbone

    out = _check_args(quant, out, force)
    tasks = load_task_adapters(list(adapters))
    _warn_trained_quant(tasks, quant)
    log: dict = {"edgevlm_version": __version__, "quantization": quant, "timings_s": {}}
    bar = tqdm(total=6, desc=f"export {quant}", unit="stage", disable=not progress)
    tmp = fsutil.make_temp_dir(out)
    try:
        with _stage(log, "load", bar):
            bb = load_backbone(backbone or recorded_backbone(tasks))
            check_config(bb.model.config)
            check_fingerprints(tasks, bb.fingerprint)
            loras, targets = load_lora_tasks(list(lora), bb, {t.name for t in tasks})
        path = _graph(bb, tasks, quant, fuse, check, log, bar, tmp / WORK_DIR, (loras, frozenset(targets)))
        with _stage(log, "write", bar):
            write_bundle(tmp, path, bb, tasks, quant, log, ort_format, loras)
            _replace_dir(tmp, out, force)
    except BaseException:
        bar.leave = False  # the error line stays alone on the terminal
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return out


def _warn_trained_quant(tasks: list[TaskAdapter], quant: str) -> None:
    """One warning line per task trained against another quantization's weights (``edgevlm train --quant``)."""
    for t in tasks:
        trained = t.meta.training.get("quant", "fp32")
        if trained != quant:
            LOG.warning(
                f"warning: task {t.name!r} was trained for --quant {trained}, exported as {quant} "
                f"(train with --quant {quant} for the weights this bundle holds)"
            )


def _graph(bb, tasks: list[TaskAdapter], quant: str, fuse: bool, check: bool, log: dict, bar, work: Path,
           lora: tuple = ((), frozenset())) -> Path:  # fmt: skip
    """Build, validate, fuse, self-check and quantize the decoder graph; returns the final graph's file.
    ``lora`` = (LoRA tasks, the projections they target): the graph gets LoRA inputs only when there are some.

    Each stage's graph is spilled to ``work`` (weights to external data), so only one copy of the weights is
    in memory at a time; op counts after each stage go to ``log``.
    """
    cfg = bb.model.config
    with _stage(log, "graph", bar):
        model = build_graph(bb.model, lora_targets=lora[1])
        _check_adapters(tasks, model, bb.sizes.n_embd)
        _check_lora(lora[0], model, bb.sizes.n_embd)
        path = validate_graph(spill(model, work / "graph" / bundle.BACKBONE_FILE))
        log["op_counts"] = {"graph": op_counts(model)}
    with _stage(log, "fuse", bar):
        if fuse:
            from .fuse import fuse_graph

            path = spill(
                build_graph(bb.model, fused_attention=True, lora_targets=lora[1]),
                work / "fused" / bundle.BACKBONE_FILE,
                MATRIX_BYTES,
            )
            model = fuse_graph(
                onnx.load(path, load_external_data=False), cfg
            )  # fusion reads structure, biases, scalars
            onnx.save_model(model, path)  # structure next to the unchanged weight file
        log["op_counts"]["fused"] = op_counts(model)
    with _stage(log, "check", bar):
        if check:
            log["fp32_max_abs_logit_diff"] = self_check(path, bb, tasks, lora[0])
    with _stage(log, "quantize", bar):
        if quant != "fp32":
            model = quantize(onnx.load(path), quant)
            path = spill(model, work / quant / bundle.BACKBONE_FILE)
        log["op_counts"]["final"] = op_counts(model)
    return path


def spill(model: onnx.ModelProto, path: Path, threshold: int = 1024) -> Path:
    """Save ``model`` with every tensor over ``threshold`` bytes in ``<path>.data``; frees the in-memory weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=threshold,
    )
    _release_memory()
    return path


def _release_memory() -> None:
    """Hand freed heap memory back to the OS (large protobuf buffers otherwise stay in RSS)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _check_args(quant: str, out, force: bool) -> Path:
    if quant not in bundle.QUANT_MODES:
        raise ConfigError(f"--quant {quant!r}: expected one of {bundle.QUANT_MODES}")
    if out is None or not str(out):
        raise ConfigError("--out: an output bundle directory is required")
    out = Path(out)
    if out.parent.is_dir():
        fsutil.clean_stale(out)  # a killed earlier export: its set-aside bundle back, its temp dirs gone
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory; refusing to replace it even with --force")
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


def validate_graph(path: Path) -> Path:
    """onnx.checker with strict shape inference, on the file (weights stay on disk); returns ``path``."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"exported graph failed ONNX validation: {str(e).splitlines()[0]}") from None
    return path


def _check_adapters(tasks: list[TaskAdapter], model: onnx.ModelProto, n_embd: int) -> dict[str, tuple[int, int]]:
    """Every task's tensors fit the graph's adapter inputs (same check the runtime does at load)."""
    gi = graph_inputs(model)
    return {t.name: bundle.check_adapter_against_graph(t.shapes(), gi, n_embd, str(t.source)) for t in tasks}


def _check_lora(loras: list, model: onnx.ModelProto, n_embd: int) -> None:
    gi = graph_inputs(model)
    for t in loras:
        bundle.check_adapter_against_graph(
            {k: list(v.shape) for k, v in t.tensors.items()}, gi, n_embd, str(t.source), "lora"
        )


def self_check(path: Path, bb, tasks: list[TaskAdapter], loras=()) -> dict[str, float]:
    """fp32 graph vs PyTorch VLM on a short prompt (prefill + 3 cached steps), no task and every task (a LoRA
    task: against the backbone with its LoRA merged into the weights, restored after); ExportError if off. The
    VLM's adapter hooks leave ``bb.model`` again whatever happens."""
    from edgevlm.train.model import VLM

    from .verify import session

    sess = session(str(path), low_memory=True)
    with VLM(bb.model) as vlm:
        diffs = _graph_vs_vlm(sess, vlm.eval(), bb, tasks)
        diffs.update(lora_vs_merged(sess, vlm, bb, loras))
    worst = max(diffs.values(), key=lambda d: d if d == d else float("inf"))  # NaN counts as the worst
    if not all(d <= CHECK_TOL for d in diffs.values()):
        raise ExportError(
            f"exported graph disagrees with PyTorch: max |logit diff| {worst:.2e} > {CHECK_TOL:.0e} ({diffs})"
        )
    return {k: float(f"{v:.3e}") for k, v in diffs.items()}


def _graph_vs_vlm(sess, vlm, bb, tasks: list[TaskAdapter]) -> dict[str, float]:
    """Max |logit diff| per task (``<none>``: the plain backbone) on "the quick brown fox"."""
    import torch

    from edgevlm.core.prompts import encode_prompt

    from .verify import torch_vs_graph

    cfg = bb.sizes.to_dict()  # n_kv_head/head_dim shape the past
    text = "the quick brown fox"
    diffs = {
        "<none>": torch_vs_graph(sess, vlm, cfg, encode_prompt(bb.tokenizer, "", text, [], cfg["vocab_size"]), None)
    }
    for t in tasks:
        vlm.add_task(t.meta.task).load_tensors({k: torch.from_numpy(v) for k, v in t.tensors.items()}, str(t.source))
        prompt = encode_prompt(bb.tokenizer, t.meta.task.template, text, t.meta.task.special_tokens, cfg["vocab_size"])
        diffs[t.name] = torch_vs_graph(sess, vlm, cfg, prompt, t.name, t.tensors)
    return diffs


def write_bundle(
    tmp: Path, path: Path, bb, tasks: list[TaskAdapter], quant: str, log: dict, ort_format: bool = False, loras=()
) -> None:
    """Fill the bundle directory ``tmp``: the graph ``path`` (one file, or + external data when large), the
    tokenizer, one ORT adapter file per task (each checked against the graph's inputs) and the manifest."""
    kv_cache = kv_cache_mode(onnx.load(path, load_external_data=False))
    place_graph(path, tmp / bundle.BACKBONE_FILE, identity.graph_metadata(backbone_record(bb, quant, kv_cache)))
    shutil.rmtree(tmp / WORK_DIR)
    onnx.checker.check_model(str(tmp / bundle.BACKBONE_FILE))
    onnxproto.check_external_data(tmp / bundle.BACKBONE_FILE)  # as the runtime will, before ORT opens it
    bb.tokenizer.save(str(tmp / bundle.TOKENIZER_FILE))
    (tmp / bundle.ADAPTER_DIR).mkdir()
    final = onnx.load(tmp / bundle.BACKBONE_FILE, load_external_data=False)
    gi = graph_inputs(final)
    sizes = {}
    for t in tasks:
        file = tmp / bundle.ADAPTER_DIR / f"{t.name}{bundle.ADAPTER_SUFFIX}"
        write_ort_adapter(file, t.tensors, identity.adapter_trailer(bb.fingerprint, t.name))
        back = {k: list(v.shape) for k, v in read_ort_adapter(file).items()}
        sizes[t.name] = bundle.check_adapter_against_graph(back, gi, bb.sizes.n_embd, str(file))
    for t in loras:
        file = tmp / bundle.ADAPTER_DIR / f"{t.name}{bundle.ADAPTER_SUFFIX}"
        write_ort_adapter(file, t.tensors, identity.adapter_trailer(bb.fingerprint, t.name))
        back = {k: list(v.shape) for k, v in read_ort_adapter(file).items()}
        bundle.check_adapter_against_graph(back, gi, bb.sizes.n_embd, str(file), "lora")
    m = manifest(bb, tasks, sizes, quant, log, kv_cache, loras)
    graphio.check_graph_io(m.backbone.io(), *declared_io(final), str(tmp / bundle.BACKBONE_FILE))
    genai.write(tmp, m, bb.tokenizer.id_to_token(bb.eos_token_id) or "", bb.chat_template)
    if ort_format:
        from .ortformat import write_ort

        write_ort(tmp)
    listed = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
    files = {p.relative_to(tmp).as_posix(): bundle.sha256_file(p) for p in listed}
    sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in listed}
    m = bundle.check_paths(dataclasses.replace(m, files=files, sizes=sizes), tmp)
    text = json.dumps(m.to_json(), indent=2) + "\n"
    if bundle.Manifest.from_json(json.loads(text), bundle.MANIFEST) != m:  # what the runtime will read back
        raise ExportError("manifest does not survive its own JSON round trip")
    atomic_write_text(tmp / bundle.MANIFEST, text)
    _publishable(tmp)


def place_graph(path: Path, dest: Path, metadata: dict[str, str]) -> None:
    """The graph ``path`` as ``dest`` with its weights in ``dest.data`` (ORT maps that file, so a loaded session
    holds the weights about once instead of a parsed proto plus its copy: docs/runtime.md, "Memory"), and
    ``metadata`` added to its metadata_props (the backbone's identity, checked by the runtime)."""
    data = path.with_name(path.name + ".data")
    inline = not data.is_file()  # every tensor was small enough to stay inline so far
    if not inline:
        os.replace(path, dest)
        os.replace(data, dest.with_name(data.name))
    model = onnx.load(path if inline else dest, load_external_data=inline)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **metadata})
    if inline:
        spill(model, dest)
    else:
        onnx.save_model(model, dest)  # the structure only, next to its unchanged weight file


def manifest(
    bb, tasks: list[TaskAdapter], sizes: dict, quant: str, log: dict, kv_cache: str, loras=()
) -> bundle.Manifest:
    """The manifest (``files`` still empty): backbone record, tokenizer, per-task entries (bottleneck tasks, then
    LoRA tasks) and the export log."""
    eos = bb.tokenizer.id_to_token(bb.eos_token_id) or ""
    chat, turns = plain_chat_template(bb.chat_template, eos=eos), chat_turns(bb.chat_template, eos=eos)
    tokenizer = bundle.TokenizerRecord(
        bundle.TOKENIZER_FILE, eos_token_id=bb.eos_token_id, chat_template=chat, chat_turns=turns
    )
    entries = {t.name: task_entry(t, sizes[t.name], bb.sizes.vocab_size, bb.eos_token_id, bb.source) for t in tasks}
    n_params = sum(p.numel() for p in bb.model.parameters())
    for t in loras:
        entries[t.name] = t.entry(bb.sizes.vocab_size, bb.eos_token_id, bb.fingerprint, n_params)
    return bundle.Manifest(backbone_record(bb, quant, kv_cache), tokenizer, entries, export_log=log)


def backbone_record(bb, quant: str, kv_cache: str) -> bundle.BackboneRecord:
    """The manifest's backbone record (also stored in the graph's metadata)."""
    s = bb.sizes
    return bundle.BackboneRecord(
        file=bundle.BACKBONE_FILE,
        **{k: int(getattr(s, k)) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")},
        quantization=quant,
        architecture=s.architecture,
        n_kv_head=int(s.n_kv_head),
        head_dim=int(s.head_dim),
        fingerprint=bb.fingerprint,
        source=bb.path.name,  # the checkpoint's name, not a local path
        kv_cache=kv_cache,
    )


def task_entry(t: TaskAdapter, size: tuple[int, int], vocab_size: int, eos: int, source: str) -> bundle.TaskEntry:
    """The manifest's entry for ``t``; ``source`` is the exported backbone's (for adapters that do not say)."""
    from edgevlm.train.backbone import source_name

    cfg = t.meta.task
    return bundle.TaskEntry(
        adapter_file=f"{bundle.ADAPTER_DIR}/{t.name}{bundle.ADAPTER_SUFFIX}",
        bottleneck=size[0],
        special_tokens=tuple(cfg.special_tokens),
        special_token_ids=tuple(vocab_size + k for k in range(len(cfg.special_tokens))),
        template=cfg.template,
        eos_token_id=eos,
        generation=bundle.GenerationDefaults(cfg.max_new_tokens, cfg.max_source_tokens),
        metric=cfg.metric,
        trainable_params=t.meta.trainable_params,
        trainable_share=t.meta.trainable_share,
        backbone_fingerprint=t.meta.backbone_fingerprint,
        backbone_source=source_name(t.meta.backbone_source or source),
    )


def _publishable(root: Path) -> None:
    """Usual permissions (umask) instead of mkdtemp's/mkstemp's owner-only ones."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def _replace_dir(tmp: Path, out: Path, force: bool) -> None:
    """Swap the complete bundle ``tmp`` into ``out`` (an existing ``out`` only with ``force``): ``out`` is
    always the old or the new bundle, even when killed (:func:`edgevlm.core.fsutil.replace_dir`)."""
    if out.exists() and not force:
        raise ConfigError(f"--out {out}: already exists (pass --force to replace it)")
    fsutil.replace_dir(tmp, out)
