"""The on-device half of ``edgevlm demo``, run in a fresh process: torch-free, as on a phone.

``python -m edgevlm.apps.demo_device BUNDLE --out RESULT.json`` loads the bundle
once, and for every task prints a few held-out inputs with their outputs and
the task's metric on its held-out set; then measures decode speed and task
switching. It fails if torch, transformers or optimum got imported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HEAVY = ("torch", "transformers", "optimum")


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def show_task(rt, name: str, n_show: int, n_eval: int) -> dict:
    """Print examples and return the task's metric on ``n_eval`` held-out mini examples."""
    from edgevlm.train.metrics import score
    from edgevlm.train.tasks.mini import mini_task

    examples = mini_task(name, "test", n_eval)
    preds = [rt.generate(e.source, task=name) for e in examples]
    metric = rt.task(name).entry.metric or "bleu"
    scores = score(preds, [e.references() for e in examples])
    value = scores[metric]
    print(f"\n[{name}]  bottleneck {rt.tasks[name].bottleneck}")
    for e, p in list(zip(examples, preds))[:n_show]:
        print(f"  input : {clip(e.source, 110)}")
        print(f"  output: {clip(p, 110)}")
        print(f"  gold  : {clip(e.target, 110)}")
    print(f"  {metric} on {len(examples)} held-out examples: {value:.1f}; exactly right: {scores['em']:.0f}%")
    return {"metric": metric, "value": value, "exact": scores["em"], "n": len(examples)}


def encode(rt, text: str, task: str) -> list[int]:
    """Prompt ids exactly as the runtime builds them (template + task tokens)."""
    from edgevlm.core.prompts import encode_prompt

    t = rt.tasks[task]
    return encode_prompt(rt.tokenizer, t.template, text, t.special_tokens, rt.graph.vocab_size)


def decode_speed(rt, task: str, n_new: int = 64, repeats: int = 5) -> float:
    """Median decode tokens/s (prefill excluded) for an exact number of new tokens."""
    prompt = encode(rt, "name[The Eagle], food[French]", task)
    rt.generate_tokens(prompt, task=task, max_new_tokens=4, min_new_tokens=4)  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rt.generate_tokens(prompt, task=task, max_new_tokens=1, min_new_tokens=1)
        t1 = time.perf_counter()
        rt.generate_tokens(prompt, task=task, max_new_tokens=n_new + 1, min_new_tokens=n_new + 1)
        t2 = time.perf_counter()
        rates.append(n_new / max((t2 - t1) - (t1 - t0), 1e-9))
    return statistics.median(rates)


def task_switch_ms(rt, tasks: list[str], rounds: int = 20) -> float:
    """Median extra time of a one-token call whose task differs from the previous call's, in ms."""
    prompt = {t: encode(rt, "hello", t) for t in tasks}
    same, switch = [], []
    for i in range(rounds):
        a, b = tasks[i % len(tasks)], tasks[(i + 1) % len(tasks)]
        for dst, pair in ((same, (a, a)), (switch, (a, b))):
            rt.generate_tokens(prompt[pair[0]], task=pair[0], max_new_tokens=1, min_new_tokens=1)
            t0 = time.perf_counter()
            rt.generate_tokens(prompt[pair[1]], task=pair[1], max_new_tokens=1, min_new_tokens=1)
            dst.append(time.perf_counter() - t0)
    return max(0.0, (statistics.median(switch) - statistics.median(same)) * 1000)


def run(bundle: str, n_show: int, n_eval: int, threads: int | None) -> dict:
    from edgevlm.runtime import Runtime

    t0 = time.perf_counter()
    rt = Runtime.load(bundle, threads=threads)
    load_s = time.perf_counter() - t0
    print(f"loaded {bundle} in {load_s * 1000:.0f} ms: tasks {', '.join(rt.tasks)}")
    tasks = {name: show_task(rt, name, n_show, n_eval) for name in rt.tasks}
    first = next(iter(rt.tasks))
    result = {
        "tasks": tasks,
        "load_s": load_s,
        "rss_mb": rss_mb(),
        "decode_tok_s": decode_speed(rt, first),
        "task_switch_ms": task_switch_ms(rt, list(rt.tasks)),
        "heavy_modules": [m for m in HEAVY if m in sys.modules],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--out", required=True, help="where to write the measurements (JSON)")
    p.add_argument("--show", type=int, default=2)
    p.add_argument("--eval", type=int, default=40)
    p.add_argument("--threads", type=int)
    a = p.parse_args(argv)
    result = run(a.bundle, a.show, a.eval, a.threads)
    Path(a.out).write_text(json.dumps(result, indent=2))
    if result["heavy_modules"]:
        print(f"error: the on-device process imported {result['heavy_modules']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
