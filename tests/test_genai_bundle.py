"""A bundle opens in onnxruntime-genai: its generator, reading the bundle's own genai_config.json, gives the edgevlm
runtime's logits step by step (teacher-forced on edgevlm's greedy tokens) for the plain backbone and for a task
whose ``.onnx_adapter`` is activated through ``og.Adapters`` (task tokens fed as ids ``vocab_size + k``), and in
fp32 the same greedy tokens. genai runs on its own ONNX Runtime (1.31), so quantized kernels round apart from
edgevlm's 1.23.2. Runs where ``make bench-peers`` made the genai environment (.venv/genai); skipped with its
reason elsewhere (CI)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from edgevlm.benchmarks import ortgenai

GENERATE = """
import json, sys
import onnxruntime_genai as og
bundle, ids, n, adapter = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = og.Model(bundle)
params = og.GeneratorParams(model)
params.set_search_options(do_sample=False, max_length=len(ids) + n)
gen = og.Generator(model, params)
if adapter:
    adapters = og.Adapters(model)
    adapters.load(adapter, "task")
    gen.set_active_adapter(adapters, "task")
forced = json.loads(sys.argv[5])
if forced is None:  # free-running greedy: the tokens
    gen.append_tokens(ids)
    out = []
    while not gen.is_done():
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    print(json.dumps(out))
else:  # teacher-forced: the last position's logits after the prompt and after each forced token
    rows = []
    for chunk in [ids] + [[t] for t in forced]:
        gen.append_tokens(chunk)
        rows.append(gen.get_logits()[0, -1].tolist())
    print(json.dumps(rows))
"""
N_NEW = 12


@pytest.fixture(scope="module")
def genai_python():
    why = ortgenai.unavailable()
    if why:
        pytest.skip(why)
    return ortgenai.python_for(ortgenai.KIND)


def genai_run(py: str, bundle, ids: list[int], adapter: str = "", forced: list[int] | None = None) -> list:
    args = [py, "-c", GENERATE, str(bundle), json.dumps(ids), str(N_NEW), adapter, json.dumps(forced)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def edgevlm_logits(rt, task, ids: list[int], forced: list[int]) -> np.ndarray:
    """The runtime's last-position logits after the prompt and after each forced token. [len(forced) + 1, V]"""
    step = rt.steps.step_fn(rt.task(task))
    logits, past = step(np.array([ids]), np.ones((1, len(ids)), np.int64), None)
    rows = [logits[0]]
    for k, t in enumerate(forced):
        logits, past = step(np.array([[t]]), np.ones((1, len(ids) + k + 1), np.int64), past)
        rows.append(logits[0])
    return np.stack(rows)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("quant", ["fp32", "int4"])
def test_genai_runs_the_bundle_as_edgevlm_does(genai_python, mixed_bundles, arch, quant):
    from edgevlm.runtime import Runtime

    root = mixed_bundles[arch](quant)
    rt = Runtime.load(root, threads=1)
    for task in (None, "nlg"):
        cfg = rt.generation_config(task, max_new_tokens=N_NEW)
        ids = rt.prompts.encode("name[Aromi], food[Chinese], area[city centre]", rt.task(task), cfg)
        want = rt.generate_tokens(ids, task, max_new_tokens=N_NEW)  # EOS excluded
        adapter = str(rt.task(task).file) if task else ""
        got = np.array(genai_run(genai_python, root, ids, adapter, forced=want), np.float32)
        ref = edgevlm_logits(rt, task, ids, want)
        tol = 1e-4 if quant == "fp32" else 0.05  # of the largest |logit|: int4 kernels of two ORT versions
        assert np.abs(got - ref).max() <= tol * np.abs(ref).max(), (task, np.abs(got - ref).max())
        if quant == "fp32":
            eos = rt.task(task).eos_token_id if task else rt.eos_token_id
            free = genai_run(genai_python, root, ids, adapter)
            assert free[: len(want)] == want and free[len(want) :] in ([], [eos]), (task, want, free)
