"""One engine per process, driven over a pipe, so engines can be timed interleaved without sharing a process.

In one process, engines disturb each other on a 2-core machine (PyTorch's
and each ORT session's worker threads spin after their own work and steal
the cores the next engine needs, so an engine decodes slower next to the others
than alone). A user's app runs one engine,
so each runs in its own worker process; the parent sends one command at a
time, and idle workers block on their pipe. A peer with its own environment (onnxruntime-genai) runs that
environment's Python (:func:`.ortgenai.python_for`).

    python -m edgevlm.benchmarks.worker SPEC_JSON   # reads JSON commands on stdin

Commands (one JSON object per line; the answer is one ``WORKER_JSON`` line):
``{"op": "gen", "prompt": 32, "new": 16, "task": ...}`` -> ``{"s": wall seconds, "cpu_s": process CPU
seconds, "got": n}`` (measured inside the worker around ``generate`` only),
``{"op": "weight_bytes"}``, ``{"op": "quit"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgevlm.core.errors import EdgeVLMError

from . import ortgenai
from .llamacpp import KIND as LLAMACPP
from .llamacpp import PASSIVE

MARK = "WORKER_JSON "
DEFAULT = "default"  # "task" value meaning: the engine's own task


class Worker:
    """The parent's handle on one engine process."""

    def __init__(self, kind: str, fmt: str, path: Path, threads: int, task: str | None = None):
        spec = {"kind": kind, "fmt": fmt, "path": str(path), "threads": threads, "task": task}
        env = {
            **os.environ,
            "TRANSFORMERS_VERBOSITY": "error",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
        }
        if kind == LLAMACPP:  # llama.cpp's OpenMP threads spin as in a user's process, or sleep ("/passive")
            env.pop("OMP_WAIT_POLICY", None)
            if PASSIVE in fmt:
                env["OMP_WAIT_POLICY"] = "PASSIVE"
        self.kind, self.fmt, self.path, self.task = kind, fmt, Path(path), task
        self.label = label(kind, fmt, task)
        self.proc = subprocess.Popen(
            [ortgenai.python_for(kind), "-m", "edgevlm.benchmarks.worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.ready = self._read()  # {"load_s": ...} once loaded

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                out = json.loads(line[len(MARK) :])
                if "error" in out:
                    raise EdgeVLMError(f"{self.label} worker: {out['error']}")
                return out
        raise EdgeVLMError(f"{self.label} worker exited (code {self.proc.wait()}) without answering")

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def generate(self, prompt_tokens: int, new_tokens: int, task: str | None = DEFAULT) -> float:
        """Wall seconds for one exact-length generation (measured in the worker; CPU seconds in ``last_cpu_s``)."""
        r = self.call(op="gen", prompt=prompt_tokens, new=new_tokens, task=task)
        if r["got"] != new_tokens:
            raise EdgeVLMError(f"{self.label} decoded {r['got']} tokens instead of exactly {new_tokens}")
        self.last_cpu_s = r["cpu_s"]
        return r["s"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call(op="quit")
            except EdgeVLMError:
                pass
            self.proc.wait(timeout=60)


def label(kind: str, fmt: str, task: str | None) -> str:
    """An engine's row name (the same in the worker and the parent)."""
    if kind == LLAMACPP:
        return f"llama.cpp {fmt}"
    if kind == ortgenai.KIND:
        return f"{ortgenai.NAME} {fmt}"
    return f"{kind} {fmt}" + (f" task={task}" if kind == "edgevlm" else "")


def serve(spec: dict) -> None:
    """The worker side: load the engine, then answer commands until ``quit``."""
    from .peers import make_engine as make

    t0 = time.perf_counter()
    base = make(spec["kind"], spec["fmt"], Path(spec["path"]), spec["threads"], spec.get("task"))
    base.load()
    engines = {DEFAULT: base}
    prompts: dict[tuple, object] = {}
    _answer({"load_s": time.perf_counter() - t0})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            _answer({"bye": True})
            return
        if cmd["op"] == "weight_bytes":
            _answer(base.weight_bytes())
            continue
        key = cmd.get("task", DEFAULT)
        if key not in engines:  # the same loaded runtime under another task (or task=None)
            engines[key] = make(base.kind, base.fmt, base.path, base.threads, key)
            engines[key].model, engines[key].tokenizer = base.model, base.tokenizer
        eng = engines[key]
        p = prompts.setdefault((key, cmd["prompt"]), eng.prompt(cmd["prompt"]))
        t, c = time.perf_counter(), time.process_time()
        got = eng.generate(p, cmd["new"])
        _answer({"s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "got": got})


def _answer(obj: dict) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    argv = sys.argv[1:] if argv is None else argv
    try:
        serve(json.loads(argv[0]))
    except Exception as e:  # report any failure to the parent as one line, then exit non-zero
        _answer({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
