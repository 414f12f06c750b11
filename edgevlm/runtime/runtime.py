"""The on-device runtime: load a bundle once, then generate with any of its tasks, per call.

    rt = Runtime.load("bundle/")
    rt.generate("name[Aromi], food[Chinese]", task="nlg")
    for piece in rt.stream("hallo welt", task="mt"):
        print(piece, end="", flush=True)

One ONNX Runtime session holds the frozen backbone; each task's adapter
file is loaded once as an ``onnxruntime.LoraAdapter`` and selected per call
with ``RunOptions.add_active_adapter`` (no weights are copied, nothing is
reloaded when the task changes). Every graph run, and every way of feeding a
task's adapter, is in :class:`~edgevlm.runtime.steps.Steps` (``rt.steps``);
prompts are encoded and fitted by
:class:`~edgevlm.runtime.prompt_builder.PromptBuilder` (``rt.prompts``). Calls
share only read-only state, so concurrent calls from several threads are safe;
each call owns its cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgevlm.core.bundle import MANIFEST, Manifest, confined, find_task_entry, load_manifest
from edgevlm.core.errors import BundleError, ConfigError, TaskError
from edgevlm.core.identity import check_graph_metadata
from edgevlm.runtime import decoder
from edgevlm.runtime.batching import Batch, Row
from edgevlm.runtime.generation import GenerationConfig
from edgevlm.runtime.prompt_builder import PromptBuilder
from edgevlm.runtime.session import Graph, Task, check_graph, graph_path, load_task, open_session
from edgevlm.runtime.steps import Steps
from edgevlm.runtime.textstream import OutputText, token_bytes

DEFAULT_MAX_NEW_TOKENS = 64  # the plain backbone (task=None) has no task defaults


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
        self.prompts = PromptBuilder(tokenizer, graph, manifest.tokenizer.chat_template, root)
        self.steps = Steps(session, graph, manifest.backbone.kv_cache == "shared", str(root))
        self._table = token_bytes(tokenizer, graph.vocab_size)
        self.eos_token_id = manifest.tokenizer.eos_token_id  # for task=None

    @classmethod
    def load(cls, bundle, threads=None, spin=False, providers=None, session_options=None, graph="onnx") -> Runtime:
        """Check ``bundle`` (schema, checksums, confined paths, shapes) and load it.

        ``threads``: intra-op threads (default: all cores); ``spin``: let idle worker threads spin;
        ``providers``: ONNX Runtime execution providers (default CPU); ``session_options``: an
        ``ort.SessionOptions`` or a dict of config entries (:func:`edgevlm.runtime.session.open_session`);
        ``graph="ort"``: the bundle's ``.ort`` graph (``export --ort``) instead of ``backbone.onnx``.
        """
        root = Path(bundle)
        m = load_manifest(root)
        tok_path = confined(root, m.tokenizer.file, "tokenizer.file")
        try:
            tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as e:  # tokenizers raises a plain Exception for malformed files
            raise BundleError(f"{tok_path}: cannot read the tokenizer ({e})") from None
        listed = {confined(root, rel, "file") for rel in m.files}  # what ORT may map: checksummed files only
        session = open_session(graph_path(root, m, graph), threads, spin, providers, session_options, listed)
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

    def remove_task(self, name: str) -> Task:
        """Unload task ``name`` (TaskError if not loaded); rows of it still decoding keep its adapter."""
        with self._lock:
            if not isinstance(name, str) or name not in self._tasks:
                raise TaskError(f"unknown task {name!r}; loaded tasks: {sorted(self._tasks)}")
            task, self._tasks = self._tasks[name], {k: v for k, v in self._tasks.items() if k != name}
        self.steps.forget(task)
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
        prompts = [self.prompts.encode(s, t, cfg, chat) for s in texts]
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
        return Row(self.prompts.encode(text, t, cfg, chat), t, cfg, self._eos(t), OutputText(self._table, cfg.stop))

    def batch(self) -> Batch:
        """An empty step-wise batch over this bundle (:mod:`edgevlm.runtime.batching`); rows of several tasks
        need a graph with ``adapter_columns`` (BundleError otherwise, when they meet)."""
        return Batch(self)

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
        ids = self.prompts.fit([int(i) for i in prompt], t, cfg)
        if cfg.num_beams > 1:
            return decoder.beam_search(self.steps.step_fn(t), ids, cfg, self._eos(t))
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
        prompt = self.prompts.encode(text, t, cfg, chat)
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

    def _eos(self, task: Task | None) -> int | None:
        return task.eos_token_id if task else self.eos_token_id

    def _rows(self, prompts: list[list[int]], task: Task | None, cfg: GenerationConfig) -> list[list[str]]:
        """Each prompt's output pieces (greedy/sampling batched; beam search one prompt at a time)."""
        if cfg.num_beams > 1:
            return [
                [self._text(decoder.beam_search(self.steps.step_fn(task), p, cfg, self._eos(task)), cfg)]
                for p in prompts
            ]
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
        if len(prompts) == 1 and not cfg.do_sample:  # one greedy row: inputs and logits bound, no array per step
            row, bound = rows[0], self.steps.bound_step(task, capacity)
            for t in decoder.greedy_one(bound, prompts[0], cfg, eos, stopped=lambda: row.done):
                yield [row.finish() if t == eos else row.push(t)]
            yield [row.finish()]
            return
        step = self.steps.step_fn(task, capacity)
        steps = decoder.tokens(step, prompts, cfg, eos, stopped=lambda: np.array([r.done for r in rows]))
        for nxt in steps:
            yield ["" if r.done else r.finish() if t == eos else r.push(int(t)) for r, t in zip(rows, nxt)]
        yield [r.finish() for r in rows]
