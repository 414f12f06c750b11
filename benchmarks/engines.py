"""The engines a user could pick, behind one small interface, so they are timed the same way.

* ``edgevlm``: the project's runtime on a bundle (fp32/int8/int4), with a task or ``task=None``;
* ``pytorch``: Hugging Face ``generate`` of the backbone's own model class (GPT-2 or Llama family, fp32);
* ``optimum``: optimum-onnx ``ORTModelForCausalLM`` (fp32, or int8 dynamic via ``ORTQuantizer``).

Every engine decodes greedily an exact number of new tokens
(``min_new_tokens == max_new_tokens``) from a prompt of an exact length, so a
timing difference is the engine's, not the amount of work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevlm.core.errors import ConfigError

SPIN = "/spin"  # edgevlm format suffix: ORT's intra-op threads spin between kernels (Runtime.load(spin=True))
FILLER = ("the", "a", "is", "in", "of", "and", "to", "it")
WORDS = (
    "the restaurant near the river serves cheap food and the coffee shop in the city centre has a high "
    "customer rating while the pub is family friendly and the old man sees the big dog today"
).split()


@dataclass
class EngineSpec:
    """What every timed engine is: kind, weight format, model path, threads, task (None: plain), its loaded model."""

    kind: str
    fmt: str
    path: Path
    threads: int
    task: str | None = None
    label: str = ""
    model: Any = field(default=None, repr=False)


@dataclass
class Engine(EngineSpec):
    """One configuration to time. ``kind`` in {edgevlm, pytorch, optimum}; ``path`` a bundle/HF/ONNX dir."""

    tokenizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("edgevlm", "pytorch", "optimum"):
            raise ConfigError(f"unknown engine {self.kind!r}; expected edgevlm, pytorch or optimum")
        self.label = self.label or f"{self.kind} {self.fmt}" + (f" task={self.task}" if self.kind == "edgevlm" else "")

    def load(self) -> None:
        """Load model + tokenizer (the timed part of a cold start)."""
        getattr(self, f"_load_{self.kind}")()

    def _load_edgevlm(self) -> None:
        from edgevlm.runtime import Runtime

        self.model = Runtime.load(self.path, threads=self.threads, spin=self.fmt.endswith(SPIN))
        self.tokenizer = self.model.tokenizer

    def _load_pytorch(self) -> None:
        import torch

        from edgevlm.train.arch import for_model_type
        from edgevlm.train.backbone import load_tokenizer, read_json

        torch.set_num_threads(self.threads)
        config = Path(self.path) / "config.json"
        arch = for_model_type(read_json(config, "a Hugging Face model directory").get("model_type"), str(config))
        self.model = arch.model_class().from_pretrained(str(self.path)).eval()
        self.tokenizer = load_tokenizer(Path(self.path))

    def _load_optimum(self) -> None:
        import onnxruntime as ort
        import torch
        from optimum.onnxruntime import ORTModelForCausalLM

        from edgevlm.train.backbone import load_tokenizer

        torch.set_num_threads(self.threads)  # optimum's generate loop runs in torch
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the edgevlm runtime's default
        name = next(p.name for p in sorted(Path(self.path).glob("*.onnx")))
        self.model = ORTModelForCausalLM.from_pretrained(
            str(self.path), file_name=name, session_options=so, local_files_only=True
        )
        self.tokenizer = load_tokenizer(self.path)

    # ------------------------------------------------------------ prompts

    def prompt(self, n_tokens: int):
        """An input the model sees as exactly ``n_tokens`` tokens (task tokens included)."""
        extra = 0
        if self.kind == "edgevlm" and self.task is not None:
            extra = self._count_edgevlm("x") - self._count_plain("x")
        text = text_of_length(self._count_plain, n_tokens - extra)
        got = self._count_edgevlm(text) if self.kind == "edgevlm" else self._count_plain(text)
        if got != n_tokens:
            raise ConfigError(f"{self.label}: could not build a {n_tokens}-token prompt (got {got})")
        if self.kind == "edgevlm":
            return self._edgevlm_ids(text)
        import torch

        return torch.tensor([self.tokenizer.encode(" " + text, add_special_tokens=False).ids])

    def _count_plain(self, text: str) -> int:
        return len(self.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids)

    def _count_edgevlm(self, text: str) -> int:
        return len(self._edgevlm_ids(text))

    def _edgevlm_ids(self, text: str) -> list[int]:
        """The runtime's prompt encoding (template + task tokens), done outside the timed region."""
        from edgevlm.core.prompts import encode_prompt

        t = self.model.task(self.task)
        return encode_prompt(
            self.tokenizer, t.template if t else None, text, t.special_tokens if t else (), self.model.graph.vocab_size
        )

    # ------------------------------------------------------------ generation

    def generate(self, prompt, n_new: int) -> int:
        """Greedy-decode exactly ``n_new`` tokens; returns the number of new tokens produced."""
        if self.kind == "edgevlm":
            return len(self.model.generate_tokens(prompt, task=self.task, max_new_tokens=n_new, min_new_tokens=n_new))
        import torch

        with torch.inference_mode():
            out = self.model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                num_beams=1,
                pad_token_id=0,
            )
        return int(out.shape[1] - prompt.shape[1])

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of weights read per decoded token (see :mod:`edgevlm.benchmarks.bandwidth`)."""
        from .bandwidth import onnx_weight_bytes, torch_weight_bytes

        if self.kind == "pytorch":
            return torch_weight_bytes(self.model)
        if self.kind == "optimum":
            return onnx_weight_bytes(sorted(Path(self.path).glob("*.onnx")))
        from edgevlm.core.bundle import BACKBONE_FILE

        return onnx_weight_bytes(Path(self.path) / BACKBONE_FILE)


def text_of_length(count, n: int) -> str:
    """Words whose encoding (by ``count(text) -> int``) is exactly ``n`` tokens."""
    if n <= 0:
        raise ConfigError(f"prompt length must be positive, got {n}")
    words: list[str] = []
    for step in range(4 * n):
        if words and count(" ".join(words)) == n:
            return " ".join(words)
        fits = [w for w in (WORDS[step % len(WORDS)],) + FILLER if count(" ".join(words + [w])) <= n]
        if not fits:
            break
        words.append(fits[0])
    raise ConfigError(f"cannot build a prompt of exactly {n} tokens with this tokenizer")


def optimum_export(hf_dir: Path, out: Path, quant: str) -> Path:
    """optimum-onnx export of the same backbone (fp32), or its int8 dynamic quantization (ORTQuantizer, AVX2 config)."""
    from optimum.exporters.onnx import main_export

    if quant not in ("fp32", "int8"):
        raise ConfigError(f"optimum baseline supports fp32 and int8, not {quant!r}")
    fp32 = out if quant == "fp32" else out.with_name(out.name + ".fp32")
    main_export(str(hf_dir), str(fp32), task="text-generation-with-past", local_files_only=True, do_validation=False)
    if quant == "fp32":
        return out
    from optimum.onnxruntime import AutoQuantizationConfig, ORTQuantizer

    ORTQuantizer.from_pretrained(str(fp32)).quantize(AutoQuantizationConfig.avx2(is_static=False), str(out))
    import shutil

    shutil.rmtree(fp32, ignore_errors=True)
    return out
