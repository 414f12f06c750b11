"""The onnxruntime-genai peer: SmolLM2 built by its own model builder (int4, CPU), run by its own generator.

onnxruntime-genai 0.18.0 needs onnxruntime >= 1.31 while the project pins 1.23.2, so it lives in a separate
environment, ``.venv/genai`` (``make bench-peers``: onnxruntime 1.31.1, onnxruntime-genai 0.18.0, numpy and
onnx from ``requirements-genai.lock``, plus edgevlm itself without dependencies so the worker protocol of
:mod:`.worker` runs there), and the engine's worker and probe processes run that environment's Python
(:func:`python_for`). The 0.18.0 builder needs transformers 5 and an undeclared ``onnx_ir``; the 0.15.2
builder works with the project's transformers 4.57, so :func:`build` runs it in the main environment (torch,
transformers) with the 0.15.2 wheel, onnxruntime 1.31.1 (its quantizer) and onnx-ir unpacked into
``.venv/genai/builder`` ahead of the main packages; its int4 model runs on the 0.18.0 runtime.

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


def build(hf_dir: Path, out: Path, adapter: Path | None = None) -> Path:
    """``out``: the genai int4 CPU model of ``hf_dir`` (its builder, in a child process); with ``adapter`` (a
    PEFT LoRA directory) the builder's ``adapter_path`` option."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(hf_dir), "-o", str(out)]
    cmd += ["-p", "int4", "-e", "cpu", "-c", str(out.parent / ".genai-cache")]
    if adapter is not None:
        cmd += ["--extra_options", f"adapter_path={adapter}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(builder_dir()), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0 or not (out / CONFIG).is_file():
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"onnxruntime-genai builder failed on {hf_dir}: {tail}")
    return out


def session_overlay(threads: int, passive: bool) -> dict:
    """The genai config overlay that sets the decoder session's threads (and spinning)."""
    so: dict[str, Any] = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    if passive:  # genai passes a session option it does not know, with a string value, on as a config entry
        so["session.intra_op.allow_spinning"] = "0"
    return {"model": {"decoder": {"session_options": so}}}


@dataclass
class OrtGenaiEngine(EngineSpec):
    """onnxruntime-genai on a model directory ``path`` made by :func:`build`."""

    tokenizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not (Path(self.path) / CONFIG).is_file():
            raise ConfigError(f"onnxruntime-genai engine: {Path(self.path) / CONFIG} not found (a builder output)")
        self.label = self.label or f"{NAME} {self.fmt}"

    def load(self) -> None:
        import onnxruntime_genai as og

        cfg = og.Config(str(self.path))
        cfg.overlay(json.dumps(session_overlay(self.threads, PASSIVE in self.fmt)))
        self.model = og.Model(cfg)
        self.tokenizer = og.Tokenizer(self.model)

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
