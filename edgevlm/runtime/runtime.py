"""The on-device runtime: load a bundle once, then generate with any of its tasks, per call.

    rt = Runtime.load("bundle/")
    rt.generate("name[Aromi], food[Chinese]", task="nlg")
    for piece in rt.stream("hallo welt", task="mt"):
        print(piece, end="", flush=True)

One ONNX Runtime session holds the frozen backbone; each task's adapter
file is loaded once as an ``onnxruntime.LoraAdapter`` and selected per call
with ``RunOptions.add_active_adapter`` (no weights are copied, nothing is
reloaded when the task changes). On a ``kv_cache: shared`` graph, greedy and
sampled decoding run on one preallocated cache buffer per layer
(:class:`~edgevlm.runtime.decoder.SharedCache`), the task's adapter tensors
bound as inputs (read once per task from its file). Calls share only
read-only state, so concurrent calls from several threads are safe; each call
owns its cache.

Over-long text input is cut exactly as in training and evaluation, by
:func:`edgevlm.core.prompts.build_prompt` within ``n_positions -
max_new_tokens`` tokens: every task token and the newest turn survive, the
context (article, story, persona, MR) keeps its beginning up to the task's
``max_source_tokens``, older turns are dropped first; an
:class:`InputTruncated` warning says so. Already-encoded prompts
(:meth:`Runtime.generate_tokens`) and the plain backbone keep their task
tokens and most recent ids (:func:`edgevlm.core.prompts.truncate_left`).
"""

from __future__ import annotations

import threading
import unicodedata
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgevlm.core import names
from edgevlm.core.bundle import MANIFEST, Manifest, confined, find_task_entry, load_manifest
from edgevlm.core.errors import BundleError, ConfigError, TaskError
from edgevlm.core.identity import check_graph_metadata
from edgevlm.core.prompts import build_prompt, encode_prompt, truncate_left
from edgevlm.runtime import decoding
from edgevlm.runtime.batching import Batch, Row
from edgevlm.runtime.decoder import Decoder
from edgevlm.runtime.generation import GenerationConfig
from edgevlm.runtime.mixing import Folded, Mix, fold, read_adapter
from edgevlm.runtime.session import Graph, Task, check_graph, load_task, open_session
from edgevlm.runtime.textstream import OutputText, token_bytes

DEFAULT_MAX_NEW_TOKENS = 64  # the plain backbone (task=None) has no task defaults
MIX_CACHE = 4  # task sets whose stacked adapters stay built (mixed batches)


class InputTruncated(UserWarning):
    """The input was longer than the context allows and lost its oldest text."""


def check_identity(session: ort.InferenceSession, m: Manifest, tokenizer: Tokenizer, root: Path) -> None:
    """The graph is the manifest's backbone (fingerprint, sizes and quantization stored in it at export) and
    the tokenizer's ids fit its vocabulary (a larger tokenizer would map text onto task-embedding ids)."""
    check_graph_metadata(session.get_modelmeta().custom_metadata_map, m.backbone, str(root / m.backbone.file))
    n = tokenizer.get_vocab_size(with_added_tokens=True)
    if n > m.backbone.vocab_size:
        raise BundleError(
            f"{root / m.tokenizer.file}: the tokenizer has {n} tokens but the graph's vocabulary only "
            f"{m.backbone.vocab_size} (tokenizer from another model)"
        )


class Runtime:
    """A loaded bundle. Build it with :meth:`load`; see the module docstring for an example."""

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        session: ort.InferenceSession,
        graph: Graph,
        tokenizer: Tokenizer,
        tasks: dict[str, Task],
    ):
        self.root, self.manifest, self.session, self.graph, self.tokenizer = root, manifest, session, graph, tokenizer
        self._tasks = tasks
        self._lock = threading.Lock()
        self._decoder = Decoder(session, graph.n_layer, graph.n_kv_head, graph.head_dim)
        self._table = token_bytes(tokenizer, graph.vocab_size)
        self.eos_token_id = manifest.tokenizer.eos_token_id  # for task=None
        self._mixes: dict[tuple[str, ...], Mix] = {}  # stacked adapters of the last MIX_CACHE task sets
        self._folds: dict[str, Folded] = {}  # each task's adapter in mixed-batch form, made on first use
        self._shared = manifest.backbone.kv_cache == "shared" and names.LOGITS_TO_KEEP in self._decoder.options
        self._bound: dict[str, tuple[dict, dict]] = {}  # task -> (its adapter arrays, OrtValues on them)

    @classmethod
    def load(cls, bundle: str | Path, threads: int | None = None, spin: bool = False) -> Runtime:
        """Check ``bundle`` (schema, checksums, confined paths, shapes) and load it.

        ``threads``: intra-op threads (default: all cores); ``spin``: let idle
        worker threads spin (see :func:`edgevlm.runtime.session.session_options`).
        """
        root = Path(bundle)
        m = load_manifest(root)
        tok_path = confined(root, m.tokenizer.file, "tokenizer.file")
        try:
            tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as e:  # tokenizers raises a plain Exception for malformed files
            raise BundleError(f"{tok_path}: cannot read the tokenizer ({e})") from None
        listed = {confined(root, rel, "file") for rel in m.files}  # what ORT may map: checksummed files only
        session = open_session(confined(root, m.backbone.file, "backbone.file"), threads, spin, listed)
        graph = check_graph(session, m, root / m.backbone.file)
        check_identity(session, m, tokenizer, root)
        fp, where = m.backbone.fingerprint, str(root / MANIFEST)
        files = {name: confined(root, e.adapter_file, f"tasks.{name}.adapter_file") for name, e in m.tasks.items()}
        tasks = {name: load_task(name, e, files[name], graph, where, fp) for name, e in m.tasks.items()}
        return cls(root, m, session, graph, tokenizer, tasks)

    @property
    def tasks(self) -> Mapping[str, Task]:
        """The loaded tasks by name (read-only)."""
        return MappingProxyType(self._tasks)

    def add_task(self, path: str | Path, entry: dict | None = None) -> Task:
        """Hot-add a task from an ``.onnx_adapter`` file without reloading the backbone.

        Its description (the manifest's ``tasks.<name>`` fields plus ``name``)
        comes from ``entry``, else from ``<file>.json`` next to it, else from
        the manifest of the bundle the file sits in (whose backbone must be
        this one, by weight fingerprint: :func:`edgevlm.core.bundle.find_task_entry`).
        """
        path = Path(path)
        name, entry, source = find_task_entry(path, entry, self.manifest.backbone)
        task = load_task(name, entry, path, self.graph, source, self.manifest.backbone.fingerprint)
        with self._lock:
            if name in self._tasks:
                raise TaskError(f"task {name!r} is already loaded; loaded tasks: {sorted(self._tasks)}")
            self._tasks = {**self._tasks, name: task}
        return task

    def task(self, name: str | None) -> Task | None:
        """The task called ``name`` (``None``: the plain backbone); TaskError lists the loaded ones."""
        if name is None:
            return None
        t = self._tasks.get(name) if isinstance(name, str) else None
        if t is None:
            raise TaskError(
                f"unknown task {name!r}; available tasks: {sorted(self._tasks)} (or task=None for the plain backbone)"
            )
        return t

    # -- generation -----------------------------------------------------------------------------

    def generate(
        self, text: str | list[str], task: str | None | list[str | None] = None, chat: bool = False, **options
    ) -> str | list[str]:
        """Generate a continuation of ``text`` (or of each string of a list, batched) with ``task``.

        ``task`` may be a list, one task per text (None: the plain backbone): the rows run as one
        batch (:meth:`batch`), each giving what it gives alone.

        Options (all keyword): ``max_new_tokens`` (default: the task's),
        ``min_new_tokens``, ``do_sample``, ``temperature``, ``top_k``,
        ``top_p``, ``seed``, ``num_beams``, ``length_penalty``, ``stop``
        (strings; output ends before the first one). Decoding ends at the
        task's EOS. ``task=None`` runs the plain backbone; with ``chat=True``
        the text is the user turn of the model's own chat template (the
        manifest's ``tokenizer.chat_template``, e.g. an instruct model). A list
        is decoded as one left-padded batch (beam search: one input after the other).
        """
        texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
        if texts is None:
            raise ConfigError(f"input must be a string or a list of strings, got {type(text).__name__}")
        if isinstance(task, (list, tuple)):
            return self._generate_mixed(texts, list(task), chat, options)
        t = self.task(task)
        cfg = self._config(t, options)
        if not texts:
            return []
        prompts = [self._encode(s, t, cfg, chat) for s in texts]
        rows = self._rows(prompts, t, cfg)
        out = ["".join(r) for r in rows]
        return out[0] if isinstance(text, str) else out

    def _generate_mixed(self, texts: list, tasks: list, chat: bool, options: dict) -> list[str]:
        """One row per (text, task), decoded together by a :class:`Batch`."""
        if len(texts) != len(tasks):
            raise ConfigError(f"task list has {len(tasks)} entries for {len(texts)} inputs (one task per input)")
        rows = [self.row(s, t, chat, **options) for s, t in zip(texts, tasks)]
        out = {id(r): [] for r in rows}
        batch = self.batch()
        for r in rows:
            batch.add(r)
        while batch:
            for r, piece, _ in batch.step():
                out[id(r)].append(piece)
        return ["".join(out[id(r)]) for r in rows]

    def row(self, text: str, task: str | None = None, chat: bool = False, **options) -> Row:
        """One validated, encoded input for a :class:`Batch` (same options as :meth:`generate`, no beams)."""
        t = self.task(task)
        cfg = self._config(t, options)
        if cfg.num_beams > 1:
            raise ConfigError("batched rows decode one token at a time: beam search (num_beams > 1) needs generate()")
        return Row(self._encode(text, t, cfg, chat), t, cfg, self._eos(t), OutputText(self._table, cfg.stop))

    def batch(self) -> Batch:
        """An empty step-wise batch over this bundle (:mod:`edgevlm.runtime.batching`); rows of several tasks
        need a graph with ``adapter_columns`` (BundleError otherwise, when they meet)."""
        return Batch(self)

    def _mix(self, tasks: tuple[str, ...]) -> Mix:
        """The stacked adapters of ``tasks`` (names, fixed order), folded once per task set and kept."""
        if not self.graph.mixed:
            raise BundleError(
                f"{self.root}: the graph has no {names.ADAPTER_COLUMNS} input (exported before mixed-task "
                "batches): re-export the bundle to run rows of different tasks together"
            )
        with self._lock:
            mix = self._mixes.pop(tasks, None)
            if mix is None:
                for n in tasks:
                    if n not in self._folds:
                        self._folds[n] = fold(read_adapter(self._tasks[n].file), self.graph.n_layer)
                mix = Mix([self._folds[n] for n in tasks], self.graph.n_embd)
            self._mixes[tasks] = mix  # most recent last
            while len(self._mixes) > MIX_CACHE:
                del self._mixes[next(iter(self._mixes))]
            return mix

    def generate_tokens(self, prompt: list[int], task: str | None = None, **options) -> list[int]:
        """Like :meth:`generate` on already-encoded prompt ids; returns the new token ids (EOS excluded).

        With ``stop`` strings, decoding ends at the token that completes one (that token included).
        """
        t = self.task(task)
        cfg = self._config(t, options)
        if not prompt:
            raise ConfigError("input is empty: the prompt has no tokens")
        limit = self.graph.vocab_size + (len(t.special_tokens) if t else 0)
        odd = [i for i in prompt if isinstance(i, bool) or not isinstance(i, (int, np.integer))]
        if odd:  # int(1.5) would be 1: a silent change of the request
            raise ConfigError(f"prompt ids must be integers, got {odd[0]!r}")
        bad = [i for i in prompt if not 0 <= int(i) < limit]
        if bad:
            raise ConfigError(f"prompt id {bad[0]} is out of range: ids must be in [0, {limit}) for task {task!r}")
        ids = self._fit([int(i) for i in prompt], t, cfg)
        if cfg.num_beams > 1:
            return decoding.beam_search(self._step(t), ids, cfg, self._eos(t))
        row = OutputText(self._table, cfg.stop)
        for _ in self._decode([ids], t, cfg, [row]):
            pass
        return row.tokens

    def stream(self, text: str, task: str | None = None, chat: bool = False, **options) -> Iterator[str]:
        """Yield the output text piece by piece as it decodes (same options as :meth:`generate`, no beams)."""
        t = self.task(task)
        cfg = self._config(t, options)
        if cfg.num_beams > 1:
            raise ConfigError("stream() decodes one token at a time: beam search (num_beams > 1) needs generate()")
        if not isinstance(text, str):
            raise ConfigError(f"stream() takes one input string, got {type(text).__name__}")
        prompt = self._encode(text, t, cfg, chat)
        return (p[0] for p in self._decode([prompt], t, cfg, [OutputText(self._table, cfg.stop)]) if p[0])

    def generation_config(self, task: str | None = None, **options) -> GenerationConfig:
        """The validated settings a call with these options would use (task defaults filled in)."""
        return self._config(self.task(task), options)

    def _config(self, task: Task | None, options: dict) -> GenerationConfig:
        opts = dict(options)
        if opts.get("max_new_tokens") is None:
            opts["max_new_tokens"] = task.max_new_tokens if task else DEFAULT_MAX_NEW_TOKENS
        if opts.get("stop") is None:
            opts["stop"] = []
        try:
            return GenerationConfig(**opts)
        except TypeError:
            unknown = sorted(set(opts) - set(GenerationConfig.__dataclass_fields__))
            raise ConfigError(
                f"unknown generation option(s) {unknown}; known: {sorted(GenerationConfig.__dataclass_fields__)}"
            ) from None

    def _encode(self, text: str, task: Task | None, cfg: GenerationConfig, chat: bool = False) -> list[int]:
        """Prompt ids (task tokens as ``vocab_size + k``; with ``chat`` the chat template's turn), cut to fit."""
        if not isinstance(text, str):
            raise ConfigError(f"input must be a string, got {type(text).__name__}")
        if not "".join(c for c in text if unicodedata.category(c) != "Cf").strip():  # zero-width only: empty
            raise ConfigError("input is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates: undecodable bytes from argv or a file
            raise ConfigError(f"input is not valid UTF-8 text (undecodable byte at character {e.start})") from None
        v = self.graph.vocab_size
        template = self._chat_template(task) if chat else task.template if task else None
        ids = encode_prompt(self.tokenizer, template, text, task.special_tokens if task else (), v)
        if task is None:
            return self._fit(ids, None, cfg)
        kept = build_prompt(self.tokenizer, task, text, v, self._budget(ids, cfg))
        if len(kept) < len(ids):
            warnings.warn(
                f"input has {len(ids)} tokens; kept {len(kept)}: every task token, the newest turn and the "
                f"start of the context, as in training (n_positions={self.graph.n_positions}, "
                f"max_new_tokens={cfg.max_new_tokens})",
                InputTruncated,
                stacklevel=3,
            )
        return kept

    def _chat_template(self, task: Task | None) -> str:
        """The manifest's one-turn chat template (``{input}`` = the user message), for ``chat=True``."""
        if task is not None:
            raise ConfigError(f"chat=True is for task=None (the plain model); task {task.name!r} has its own template")
        template = self.manifest.tokenizer.chat_template
        if template is None:
            raise ConfigError(f"chat=True: {self.root / MANIFEST} has no tokenizer.chat_template (not a chat model)")
        return template

    def _budget(self, ids: list[int], cfg: GenerationConfig) -> int:
        """Prompt tokens that fit beside ``max_new_tokens``; ConfigError when not even the task tokens fit."""
        n_pos, v = self.graph.n_positions, self.graph.vocab_size
        n_special = sum(1 for i in ids if i >= v)
        budget = n_pos - cfg.max_new_tokens
        if budget < n_special + 1:
            raise ConfigError(
                f"max_new_tokens={cfg.max_new_tokens} is beyond the context: the backbone holds "
                f"n_positions={n_pos} tokens and this prompt needs at least {n_special + 1}"
            )
        return budget

    def _fit(self, ids: list[int], task: Task | None, cfg: GenerationConfig) -> list[int]:
        """Cut already-encoded ids (truncate_left policy) to ``n_positions - max_new_tokens`` tokens, and at
        most the task's ``max_source_tokens`` of text plus its task tokens."""
        n_pos, v = self.graph.n_positions, self.graph.vocab_size
        budget = self._budget(ids, cfg)
        if task is not None and task.max_source_tokens:
            budget = min(budget, task.max_source_tokens + len(task.special_tokens))  # as in training
        if len(ids) > budget:
            warnings.warn(
                f"input has {len(ids)} tokens; kept the last {budget} and every task token "
                f"(n_positions={n_pos}, max_new_tokens={cfg.max_new_tokens})",
                InputTruncated,
                stacklevel=4,
            )
            ids = truncate_left(ids, budget, v)
        return ids

    def _run_options(self, task: Task | None) -> ort.RunOptions:
        ro = ort.RunOptions()
        if task is not None:
            ro.add_active_adapter(task.adapter)
        return ro

    def _step(self, task: Task | None, capacity: int | None = None) -> decoding.StepFn:
        """The graph as a step function under ``task``'s adapter; with ``capacity`` (positions the call will
        reach) on a shared-cache graph, one that appends to a :class:`SharedCache` (no past reordering)."""
        if capacity is None or not self._shared:
            return self._decoder.step_fn(self._run_options(task))
        return self._decoder.shared_step_fn(self._adapter_values(task), capacity)

    def _adapter_values(self, task: Task | None) -> dict[str, ort.OrtValue]:
        """``task``'s adapter tensors as OrtValues (none for the plain backbone), read from its file once."""
        if task is None:
            return {}
        with self._lock:
            if task.name not in self._bound:
                arrays = read_adapter(task.file)  # the OrtValues do not own memory: the arrays stay with them
                self._bound[task.name] = arrays, {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in arrays.items()}
            return self._bound[task.name][1]

    def _eos(self, task: Task | None) -> int | None:
        return task.eos_token_id if task else self.eos_token_id

    def _rows(self, prompts: list[list[int]], task: Task | None, cfg: GenerationConfig) -> list[list[str]]:
        """Each prompt's output pieces (greedy/sampling batched; beam search one prompt at a time)."""
        if cfg.num_beams > 1:
            return [[self._text(decoding.beam_search(self._step(task), p, cfg, self._eos(task)), cfg)] for p in prompts]
        rows = [OutputText(self._table, cfg.stop) for _ in prompts]
        pieces: list[list[str]] = [[] for _ in prompts]
        for step in self._decode(prompts, task, cfg, rows):
            for acc, p in zip(pieces, step):
                acc.append(p)
        return pieces

    def _text(self, tokens: list[int], cfg: GenerationConfig) -> str:
        row = OutputText(self._table, cfg.stop)
        parts = [row.push(t) for t in tokens if not row.done]
        return "".join(parts) + row.finish()

    def _decode(
        self, prompts: list[list[int]], task: Task | None, cfg: GenerationConfig, rows: list[OutputText]
    ) -> Iterator[list[str]]:
        """Greedy or sampled decoding of left-padded prompts; yields each step's new text per row."""
        eos, capacity = self._eos(task), max(len(p) for p in prompts) + cfg.max_new_tokens
        step = self._step(task, capacity)
        steps = decoding.tokens(step, prompts, cfg, eos, stopped=lambda: np.array([r.done for r in rows]))
        for nxt in steps:
            yield ["" if r.done else r.finish() if t == eos else r.push(int(t)) for r, t in zip(rows, nxt)]
        yield [r.finish() for r in rows]
