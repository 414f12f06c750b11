"""The onnxruntime-genai peer: SmolLM2 built by its own model builder (int4, CPU), run by its own generator.

onnxruntime-genai 0.18.0 needs onnxruntime >= 1.31 while the project pins 1.23.2, so it lives in a separate
environment, ``.venv/genai`` (``make bench-peers``: onnxruntime 1.31.1, onnxruntime-genai 0.18.0, numpy and
onnx from ``requirements-genai.lock``, plus edgevlm itself without dependencies so the worker protocol of
:mod:`.worker` runs there), and the engine's worker and probe processes run that environment's Python
(:func:`python_for`). The 0.18.0 builder needs transformers 5 (it imports ``Qwen3_5ForConditionalGeneration``)
and an undeclared ``onnx_ir``; the 0.15.2 builder works with the project's transformers 4.57, so :func:`build`
runs it in the main environment (torch, transformers) with the 0.15.2 wheel, onnxruntime 1.31.1 (its quantizer)
and onnx-ir unpacked into ``.venv/genai/builder`` ahead of the main packages; its int4 model runs on the 0.18.0
runtime.

LoRA: the builder's ``adapter_path`` option writes a PEFT LoRA *into* the graph (A/B MatMuls + Add per
projection, as initializers), which ``og.Adapters`` cannot switch. :func:`build` with ``adapter`` keeps those
MatMuls in fp32 (``nodes_to_exclude``) and :func:`extract_adapter` turns their weights into optional graph
inputs with zero defaults and an ONNX Runtime adapter file (``lora.onnx_adapter``), as Olive's adapter
extraction does: the ``+lora`` formats load it through ``og.Adapters`` and ``set_active_adapter``; without it
(``+lora-graph``: a row name only) the same graph runs the zero LoRA, genai's no-adapter state.

Decoding is greedy, exactly ``n_new`` tokens (``min_length = max_length``: no stop on end-of-text), one
``append_tokens`` of the prompt and one ``generate_next_token`` per token. Threads: ``intra_op_num_threads``
in the genai config's ``session_options``; ORT's threads spin between operations as genai ships them, or
sleep (``/passive``: ``session.intra_op.allow_spinning = 0``, edgevlm's default).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevlm.core.errors import ConfigError

from .engines import EngineSpec, text_of_length

KIND = "ortgenai"
NAME = "onnxruntime-genai"  # row label prefix
PASSIVE = "/passive"  # format suffix: ORT's intra-op threads sleep when idle
LORA = "+lora"  # format suffix: activate the model directory's adapter file
LORA_GRAPH = "+lora-graph"  # format suffix naming a row of the LoRA graph with no adapter active
ADAPTER_FILE = "lora.onnx_adapter"
ADAPTER_NAME = "lora"
LLAMA_BLOCKS = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "o_proj": "attn"}  # others: "mlp"
CONFIG = "genai_config.json"
ENV_DIR = "genai"  # under the main environment's prefix (.venv/genai)
PYTHON_ENV = "EDGEVLM_GENAI_PYTHON"  # another genai environment's python
BUILDER_ENV = "EDGEVLM_GENAI_BUILDER"  # another unpacked builder directory


def env_dir() -> Path:
    return Path(sys.prefix) / ENV_DIR


def genai_python() -> Path:
    """The genai environment's python (``$EDGEVLM_GENAI_PYTHON`` or ``.venv/genai/bin/python``)."""
    return Path(os.environ.get(PYTHON_ENV) or env_dir() / "bin" / "python")


def builder_dir() -> Path:
    """The unpacked 0.15.2 builder (+ onnxruntime 1.31.1, onnx-ir) put ahead of the main environment's packages."""
    return Path(os.environ.get(BUILDER_ENV) or env_dir() / "builder")


def python_for(kind: str) -> str:
    """The interpreter of an engine kind's worker/probe processes."""
    return str(genai_python()) if kind == KIND else sys.executable


def unavailable() -> str | None:
    """Why the onnxruntime-genai peer cannot run here (None when it can)."""
    py, b = genai_python(), builder_dir()
    if not py.is_file():
        return f"onnxruntime-genai peer skipped: no genai environment at {py} (`make bench-peers` makes it)"
    if not (b / "onnxruntime_genai" / "models" / "builder.py").is_file():
        return f"onnxruntime-genai peer skipped: its model builder is not unpacked in {b} (`make bench-peers`)"
    return None


def build(hf_dir: Path, out: Path, adapter: Path | None = None, precision: str = "int4") -> Path:
    """``out``: the genai CPU model of ``hf_dir`` (its builder, in a child process); with ``adapter`` (a PEFT LoRA
    directory) the LoRA as a switchable adapter (:func:`extract_adapter`)."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(hf_dir), "-o", str(out)]
    cmd += ["-p", precision, "-e", "cpu", "-c", str(out.parent / ".genai-cache")]
    if adapter is not None:
        cmd += [
            "--extra_options",
            f"adapter_path={adapter}",
            "nodes_to_exclude=" + ",".join(lora_nodes(hf_dir, adapter)),
        ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(builder_dir()), os.environ.get("PYTHONPATH", "")])}
    _check(subprocess.run(cmd, capture_output=True, text=True, env=env), f"builder on {hf_dir}")
    if adapter is not None:  # in the genai environment: its onnxruntime writes the adapter file it reads
        code = "import sys; from edgevlm.benchmarks.ortgenai import extract_adapter; extract_adapter(sys.argv[1])"
        _check(subprocess.run([str(genai_python()), "-c", code, str(out)], capture_output=True, text=True), "LoRA")
    if not (out / CONFIG).is_file():
        raise ConfigError(f"onnxruntime-genai builder wrote no {CONFIG} in {out}")
    return out


def _check(r: subprocess.CompletedProcess, what: str) -> None:
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"onnxruntime-genai {what} failed: {tail}")


def lora_nodes(hf_dir: Path, adapter: Path) -> list[str]:
    """The builder's names of the LoRA A/B MatMuls of a Llama-family model (kept fp32, not quantized)."""
    layers = json.loads((Path(hf_dir) / "config.json").read_text())["num_hidden_layers"]
    targets = json.loads((Path(adapter) / "adapter_config.json").read_text())["target_modules"]
    return [
        f"/model/layers.{i}/{LLAMA_BLOCKS.get(t, 'mlp')}/{t}/{ab}/MatMul"
        for i in range(layers)
        for t in sorted(targets)
        for ab in ("lora_A", "lora_B")
    ]


def extract_adapter(model_dir: str | Path) -> Path:
    """Move the LoRA weights of a builder graph into ``lora.onnx_adapter``; they become graph inputs whose
    defaults are zeros (no adapter). Runs in the genai environment (onnx, onnxruntime >= 1.31)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    d = Path(model_dir)
    model = onnx.load(str(d / "model.onnx"))
    keep: list = []  # the arrays behind the OrtValues, alive until the file is written
    params = {}
    for init in model.graph.initializer:
        if ".lora_A." in init.name or ".lora_B." in init.name:
            keep.append(np.ascontiguousarray(numpy_helper.to_array(init)))
            params[init.name] = ort.OrtValue.ortvalue_from_numpy(keep[-1])
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(keep[-1]), init.name))
            model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    if not params:
        raise ConfigError(f"{d / 'model.onnx'}: no LoRA weights (lora_A/lora_B initializers) to extract")
    _save(model, d)
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters(params)
    tmp = d / (ADAPTER_FILE + ".tmp")
    fmt.export_adapter(str(tmp))
    os.replace(tmp, d / ADAPTER_FILE)
    return d / ADAPTER_FILE


def _save(model, d: Path) -> None:
    """The graph back over ``d/model.onnx`` (+ its external data), written beside it first, then renamed."""
    import onnx

    tmp = d / ".extract.tmp"
    tmp.mkdir(exist_ok=True)
    onnx.save(model, str(tmp / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    for name in ("model.onnx.data", "model.onnx"):
        os.replace(tmp / name, d / name)
    tmp.rmdir()


def session_overlay(threads: int, passive: bool, **extra) -> dict:
    """The genai config overlay that sets the decoder session's threads (and spinning, and ``extra`` options)."""
    so: dict[str, Any] = {"intra_op_num_threads": threads, "inter_op_num_threads": 1, **extra}
    if passive:  # genai passes a session option it does not know, with a string value, on as a config entry
        so["session.intra_op.allow_spinning"] = "0"
    return {"model": {"decoder": {"session_options": so}}}


@dataclass
class OrtGenaiEngine(EngineSpec):
    """onnxruntime-genai on a model directory ``path`` made by :func:`build`."""

    tokenizer: Any = field(default=None, repr=False)
    adapters: Any = field(default=None, repr=False)
    session_extra: dict = field(default_factory=dict)  # more genai session_options (e.g. enable_profiling)

    def __post_init__(self) -> None:
        if not (Path(self.path) / CONFIG).is_file():
            raise ConfigError(f"onnxruntime-genai engine: {Path(self.path) / CONFIG} not found (a builder output)")
        self.label = self.label or f"{NAME} {self.fmt}"

    def load(self) -> None:
        import onnxruntime_genai as og

        cfg = og.Config(str(self.path))
        cfg.overlay(json.dumps(session_overlay(self.threads, PASSIVE in self.fmt, **self.session_extra)))
        self.model = og.Model(cfg)
        self.tokenizer = og.Tokenizer(self.model)
        if self.fmt.endswith(LORA):
            if not (Path(self.path) / ADAPTER_FILE).is_file():
                raise ConfigError(f"onnxruntime-genai {self.fmt}: no {ADAPTER_FILE} in {self.path} (build with a LoRA)")
            self.adapters = og.Adapters(self.model)
            self.adapters.load(str(Path(self.path) / ADAPTER_FILE), ADAPTER_NAME)

    def _count(self, text: str) -> int:
        return len(self.tokenizer.encode(" " + text.strip()))

    def prompt(self, n_tokens: int) -> list[int]:
        """Token ids of a text of exactly ``n_tokens`` tokens (genai's tokenizer of the model)."""
        return [int(i) for i in self.tokenizer.encode(" " + text_of_length(self._count, n_tokens))]

    def generate(self, prompt: list[int], n_new: int) -> int:
        """Greedy-decode exactly ``n_new`` tokens (no stop on end-of-text); returns the number decoded."""
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        total = len(prompt) + n_new
        params.set_search_options(do_sample=False, max_length=total, min_length=total)
        gen = og.Generator(self.model, params)
        if self.adapters is not None:
            gen.set_active_adapter(self.adapters, ADAPTER_NAME)
        gen.append_tokens(prompt)
        n = 0
        while not gen.is_done():
            gen.generate_next_token()
            n += 1
        return n

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of initializers read per token in the builder's graph (see :mod:`.bandwidth`)."""
        from .bandwidth import onnx_weight_bytes

        return onnx_weight_bytes(Path(self.path) / "model.onnx")


def profile(model_dir: Path, threads: int = 2, new: int = 64, prompt: int = 32) -> dict:
    """Per decode step of a genai model (``/passive``): ORT's model-run ms and kernel ms by op type, from ORT's
    profiler enabled through the genai config (the prefill run left out). Runs in the genai environment."""
    import gc
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        eng = OrtGenaiEngine(KIND, "int4" + PASSIVE, Path(model_dir), threads, session_extra={})
        eng.session_extra["enable_profiling"] = str(Path(tmp) / "genai")
        eng.load()
        eng.generate(eng.prompt(prompt), new)
        eng.model = eng.tokenizer = None  # ORT writes the trace when the session closes
        gc.collect()
        trace = json.loads(next(Path(tmp).glob("genai*.json")).read_text())
    return per_step(trace)


def per_step(trace: list[dict]) -> dict:
    """An ORT profiler trace -> ms per model run and kernel ms per op type, over all runs but the first."""
    import bisect

    runs = sorted((e["ts"], e["dur"]) for e in trace if e.get("cat") == "Session" and e["name"] == "model_run")
    if len(runs) < 2:
        raise ConfigError(f"the profile has {len(runs)} model runs; expected a prefill and decode steps")
    starts, ops = [t for t, _ in runs], {}
    for e in trace:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and bisect.bisect_right(starts, e["ts"]) > 1:
            ops[e["args"]["op_name"]] = ops.get(e["args"]["op_name"], 0.0) + e["dur"] / 1e3
    steps = len(runs) - 1
    ops = {k: v / steps for k, v in sorted(ops.items(), key=lambda kv: -kv[1])}
    run_ms = sum(d for _, d in runs[1:]) / 1e3 / steps
    return {"steps": steps, "run_ms_per_step": run_ms, "kernels_ms_per_step": sum(ops.values()), "ops_ms": ops}


def main(argv: list[str] | None = None) -> int:
    """``python -m edgevlm.benchmarks.ortgenai build HF_DIR OUT [--adapter PEFT_DIR] [--precision int4|fp32]``, or
    ``profile MODEL_DIR [--threads 2] [--tokens 64]`` (with the genai environment's python)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m edgevlm.benchmarks.ortgenai", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="the genai CPU model of a Hugging Face directory (its 0.15.2 builder)")
    b.add_argument("hf_dir", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--adapter", type=Path, help="a PEFT LoRA directory: written as lora.onnx_adapter")
    b.add_argument("--precision", default="int4", choices=("int4", "fp32"))
    f = sub.add_parser("profile", help="kernel ms per decode step by op type (run with .venv/genai/bin/python)")
    f.add_argument("model_dir", type=Path)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--tokens", type=int, default=64)
    a = p.parse_args(argv)
    if a.cmd == "build":
        print(build(a.hf_dir, a.out, a.adapter, a.precision))
        return 0
    meta = {"model": str(a.model_dir), "threads": a.threads, "tokens": a.tokens, "load_average": os.getloadavg()[0]}
    print(json.dumps({**meta, **profile(a.model_dir, a.threads, a.tokens)}, indent=1))
    return 0


if __name__ == "__main__":
    from .common import run_main

    sys.exit(run_main(main))
