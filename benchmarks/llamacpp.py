"""The llama.cpp peer: a GGUF model run through ``llama-cpp-python`` (the ``peers`` extra), timed like the others.

Same interface as :class:`edgevlm.benchmarks.engines.Engine` (``load``, ``prompt``, ``generate``,
``weight_bytes``) so :mod:`.worker` runs it in its own process. Decoding is greedy on llama.cpp's own
logits (``llama_get_logits_ith`` of the last token, argmax in numpy as the edgevlm runtime does), exactly
``n_new`` tokens: one prefill ``llama_decode`` of the prompt, then one per token. Threads: ``n_threads`` =
``n_threads_batch`` = the benchmark's; llama.cpp's own defaults otherwise (its OpenMP threads spin: the
worker leaves ``OMP_WAIT_POLICY`` unset for it, as a user's process would have it).

LoRA (``+lora`` formats, as ``--lora`` does): llama-cpp-python 0.3.36's ``lora_path`` calls
``llama_adapter_lora_init`` and ``llama_set_adapters_lora`` (scale 1): llama.cpp does *not* merge the LoRA
into the weights at load; every graph build adds, for each matrix the adapter has, ``scale * B (A x)`` beside
the base ``W x`` (``build_lora_mm`` in ``llama-graph.cpp``), so a LoRA costs two small matrix products and an
add per targeted projection on every token, as genai's and edgevlm's adapters do. (With ``lora_path``
llama-cpp-python also turns memory mapping off; the weights are read into memory instead.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevlm.core.errors import ConfigError

from .engines import EngineSpec

KIND = "llamacpp"  # the peer engine kind (needs the ``peers`` extra)
PASSIVE = "/passive"  # format suffix: llama.cpp's OpenMP threads sleep when idle (OMP_WAIT_POLICY=PASSIVE)
LORA = "+lora"  # format suffix: apply the LoRA ``lora.gguf`` beside the model file (``--lora``)
N_CTX = 1024  # GPT-2's context: room for the long-context rows


@dataclass
class LlamaCppEngine(EngineSpec):
    """llama.cpp (llama-cpp-python) on one GGUF file ``path``; a ``fmt`` ending in the LoRA suffix loads the LoRA
    GGUF beside it."""

    def __post_init__(self) -> None:
        if not Path(self.path).is_file():
            raise ConfigError(f"llama.cpp engine: GGUF file {self.path} not found")
        self.label = self.label or f"llama.cpp {self.fmt}"

    def load(self) -> None:
        from llama_cpp import Llama

        from .gguf_models import LORA_FILE

        t, extra = self.threads, {}
        if self.fmt.endswith(LORA):
            extra["lora_path"] = str(Path(self.path).with_name(LORA_FILE))
        self.model = Llama(
            str(self.path), n_ctx=N_CTX, n_batch=512, n_threads=t, n_threads_batch=t, verbose=False, **extra
        )

    def _count(self, text: str) -> int:
        return len(self.model.tokenize((" " + text.strip()).encode(), add_bos=False, special=False))

    def prompt(self, n_tokens: int) -> list[int]:
        """Token ids of a text of exactly ``n_tokens`` tokens (llama.cpp's tokenizer of the GGUF)."""
        from .engines import text_of_length

        text = text_of_length(self._count, n_tokens)
        return self.model.tokenize((" " + text).encode(), add_bos=False, special=False)

    def generate(self, prompt: list[int], n_new: int) -> int:
        """Greedy-decode exactly ``n_new`` tokens (no stop on end-of-text); returns ``n_new``."""
        import llama_cpp

        m = self.model
        m.reset()
        m.eval(prompt)
        ctx, n_vocab = m._ctx.ctx, m.n_vocab()
        for i in range(n_new):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            if i < n_new - 1:
                m.eval([int(logits.argmax())])
        return n_new

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of tensors read per token: all but the position table (a tied token table is the LM head), and
        with a LoRA every tensor of its ``lora.gguf``."""
        from .gguf_models import LORA_FILE

        got = gguf_weight_bytes(self.path)
        if self.fmt.endswith(LORA):
            lora = gguf_weight_bytes(Path(self.path).with_name(LORA_FILE))
            got = {k: got[k] + lora[k] for k in got}
        return got


def gguf_weight_bytes(path: Path) -> dict[str, int]:
    """Per-token weight bytes of a GGUF: every tensor except embeddings read by row only."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
    gathered = ["position_embd.weight"] + (["token_embd.weight"] if "output.weight" in tensors else [])
    g = sum(tensors.get(n, 0) for n in gathered)
    return {"bytes_per_token": sum(tensors.values()) - g, "gather_only_bytes": g, "initializers": len(tensors)}
