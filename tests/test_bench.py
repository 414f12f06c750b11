"""Benchmarks: the measuring parts against hand-computed values, and `edgevlm bench --quick` as a smoke test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_bundle(tmp_path_factory, tiny_dir):
    """A tiny fp32 bundle with two untrained (non-identity) bottleneck-100 adapters."""
    from edgevlm.benchmarks.fixtures import export, make_adapters

    root = tmp_path_factory.mktemp("bench")
    ad = make_adapters(tiny_dir, root / "adapters", {"summarization": 100, "dialogue": 100})
    return export(tiny_dir, [ad["summarization"], ad["dialogue"]], "fp32", root / "bundle")


def _tiny_graph(path: Path) -> Path:
    """MatMul weight [8, 4] f32 + Gather-only table [10, 8] f32 + an int8 MatMulInteger weight [8, 4]
    + a graph input with a default initializer [8] f32 (an overridable adapter default)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.zeros((8, 4), np.float32), "w"),
        numpy_helper.from_array(np.zeros((10, 8), np.float32), "table"),
        numpy_helper.from_array(np.zeros((8, 4), np.int8), "wq"),
        numpy_helper.from_array(np.zeros(8, np.float32), "adapter_default"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Add", ["emb", "adapter_default"], ["h"]),
        helper.make_node("MatMul", ["h", "w"], ["y"]),
        helper.make_node("DynamicQuantizeLinear", ["h"], ["hq", "hs", "hz"]),
        helper.make_node("MatMulInteger", ["hq", "wq", "hz"], ["yq"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("adapter_default", TensorProto.FLOAT, [8]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("yq", TensorProto.INT32, [1, 4]),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_weight_bytes_counts_matmul_weights_only(tmp_path):
    from edgevlm.benchmarks.bandwidth import onnx_weight_bytes

    got = onnx_weight_bytes(_tiny_graph(tmp_path / "g.onnx"))
    assert got["bytes_per_token"] == 8 * 4 * 4 + 8 * 4  # f32 MatMul weight + int8 MatMulInteger weight
    assert got["gather_only_bytes"] == 10 * 8 * 4
    assert got["initializers"] == 3  # the adapter default is an input, not a backbone weight


def test_torch_weight_bytes_and_bound(tiny_backbone):
    from edgevlm.benchmarks.bandwidth import bound, torch_weight_bytes

    m = tiny_backbone.model
    n = sum(p.numel() for p in m.parameters()) - m.transformer.wpe.weight.numel()
    assert torch_weight_bytes(m)["bytes_per_token"] == 4 * n
    assert bound(12.0, 3 * 10**9) == pytest.approx(4.0)


def test_bundle_reads_the_same_weights_as_pytorch(bench_bundle, tiny_backbone):
    """The fp32 graph's per-token weight bytes match the PyTorch model's (LM head counted, tables excluded)
    up to the adapters' layer norms and biases, which the graph keeps as backbone-side constants."""
    from edgevlm.benchmarks.bandwidth import onnx_weight_bytes, torch_weight_bytes

    g = onnx_weight_bytes(bench_bundle / "backbone.onnx")["bytes_per_token"]
    t = torch_weight_bytes(tiny_backbone.model)["bytes_per_token"]
    assert abs(g - t) / t < 0.01


class FakeClock:
    """perf_counter that advances by the next of ``steps`` (seconds) per pair of calls: each timed pass takes a
    known time, so a rate is bytes moved / that time, exactly."""

    def __init__(self, steps: list[float]):
        self.steps, self.now, self.calls = list(steps), 0.0, 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:
            self.now += self.steps[(self.calls // 2 - 1) % len(self.steps)]
        return self.now


def test_bandwidth_counts_the_bytes_it_reads(monkeypatch):
    from edgevlm.benchmarks import bandwidth

    for threads in (1, 2):
        monkeypatch.setattr(bandwidth.time, "perf_counter", FakeClock([0.004, 0.002, 0.008]))
        bw = bandwidth.measure_bandwidth(mb=16, repeats=3, threads=threads)
        nbytes = 16 * 2**20  # one float32 array of 16 MiB, read once per pass, however many threads share it
        assert bw["gb_per_s"] == pytest.approx(nbytes / 0.004 / 1e9)  # median pass
        assert bw["best_gb_per_s"] == pytest.approx(nbytes / 0.002 / 1e9) and bw["threads"] == threads


@pytest.mark.parametrize("n", [1, 7, 32, 128])
def test_prompt_of_exact_length(tiny_backbone, n):
    from edgevlm.benchmarks.engines import text_of_length

    tok = tiny_backbone.tokenizer
    count = lambda s: len(tok.encode(" " + s.strip(), add_special_tokens=False).ids)  # noqa: E731
    assert count(text_of_length(count, n)) == n


def test_engines_decode_exact_token_counts(bench_bundle, tiny_dir):
    """Every engine kind gets prompts of the asked length (task tokens included) and decodes exactly n tokens."""
    from edgevlm.benchmarks.engines import Engine

    prompts = {}
    for e in (
        Engine("edgevlm", "fp32", bench_bundle, 1, "summarization"),
        Engine("edgevlm", "fp32", bench_bundle, 1, None),
        Engine("pytorch", "fp32", tiny_dir, 1),
    ):
        e.load()
        p = e.prompt(20)
        prompts[e.label] = p if isinstance(p, list) else p[0].tolist()
        assert len(prompts[e.label]) == 20
        assert e.generate(p, 9) == 9
    with_task = prompts["edgevlm fp32 task=summarization"]
    assert sum(i >= 1024 for i in with_task) == 2  # <article> ... <summary>: the task tokens count
    assert prompts["edgevlm fp32 task=None"] == prompts["pytorch fp32"]  # same tokenizer, same text


def test_worker_times_exact_generations_in_its_own_process(bench_bundle, tmp_path):
    from edgevlm.benchmarks.bandwidth import onnx_weight_bytes
    from edgevlm.benchmarks.worker import Worker
    from edgevlm.core.errors import EdgeVLMError

    w = Worker("edgevlm", "fp32", bench_bundle, 1, "summarization")
    try:
        assert w.ready["load_s"] > 0 and w.proc.pid != os.getpid()
        for task in ("default", "dialogue", None):  # the same runtime under another task, and the plain backbone
            assert 0 < w.generate(12, 5, task) < 60
        want = onnx_weight_bytes(bench_bundle / "backbone.onnx")["bytes_per_token"]  # counted in this process
        assert w.call(op="weight_bytes")["bytes_per_token"] == want
    finally:
        w.close()
    assert w.proc.returncode == 0
    with pytest.raises(EdgeVLMError, match="worker"):
        Worker("edgevlm", "fp32", tmp_path / "missing", 1, "summarization")


def test_profile_splits_decode_time(bench_bundle):
    from edgevlm.benchmarks.profile import profile, render

    p = profile(bench_bundle, "dialogue", tokens=6, prompt_tokens=10, threads=1)
    assert p["decode_steps"] == 5 and p["task"] == "dialogue" and p["quantization"] == "fp32"
    assert p["loop"] == "bound-shared" and len(p["python_ms_per_token_rounds"]) == p["rounds"] == 3
    assert 0 < p["kernels_ms_per_token"] < p["decode_ms_per_token"]
    assert any("MatMul" in op for op in p["ops_ms_per_token"])
    assert sum(p["ops_ms_per_token"].values()) == pytest.approx(p["kernels_ms_per_token"], rel=1e-6)
    assert "kernels" in render(p) and profile(bench_bundle, None, tokens=3, threads=1)["task"] is None


@pytest.mark.experiments
def test_graph_ab_times_interleaved_steps_and_pairs_each_round(bench_bundle, tmp_path):
    from edgevlm.core.errors import ConfigError
    from experiments.graph_speed import graph_ab

    args = ["--bundle", f"a={bench_bundle}", "--bundle", f"b={bench_bundle}", "--threads-list", "1"]
    assert graph_ab.main([*args, "--steps", "2", "--rounds", "3", "--out", str(tmp_path)]) == 0
    rows = {r["bundle"]: r for r in json.loads((tmp_path / "graph_ab" / "results.json").read_text())["records"]}
    assert set(rows) == {"a", "b"} and all(len(r["rounds_ms"]) == 3 for r in rows.values())
    assert rows["a"]["ratio_to_first"] == 1.0  # a paired with itself
    # b's ratio is the median of its per-round times over a's, recomputed from the rounds (each rounded to 0.01 ms)
    a_ms, b_ms = rows["a"]["rounds_ms"], rows["b"]["rounds_ms"]
    ratios = sorted(b / a for a, b in zip(a_ms, b_ms))
    slack = 0.006 / min(a_ms) * (1 + max(ratios)) + 0.0005  # rounding of the rounds and of the ratio
    assert rows["b"]["ratio_to_first"] == pytest.approx(ratios[1], abs=slack)
    assert rows["b"]["step_ms"] == pytest.approx(sorted(b_ms)[1], abs=0.011)  # also the median round
    assert all(0 < r["best_step_ms"] <= r["step_ms"] and r["cpu_ms"] > 0 for r in rows.values())
    with pytest.raises(ConfigError, match="at least two"):
        graph_ab.main(args[:2])


def test_probe_runtime_is_torch_free_and_reports_memory(bench_bundle):
    from edgevlm.benchmarks.probe import run_probe

    r = run_probe(
        {
            "engines": [{"kind": "edgevlm", "fmt": "fp32", "path": str(bench_bundle), "task": "dialogue"}],
            "threads": 1,
            "gen_tokens": 3,
        },
        repeats=2,
    )
    assert r["torch_imported"] is False and len(r["samples"]) == 2
    assert r["peak_rss_mb"] == pytest.approx(sum(x["peak_rss_mb"] for x in r["samples"]) / 2)  # median of two
    assert 10 < r["rss_after_import_mb"] <= r["rss_after_load_mb"] <= r["peak_rss_mb"] < 4000
    assert r["load_s"][0] > 0 and len(r["first_generate_s"]) == 1


def test_probe_failure_is_one_clear_error(tmp_path):
    from edgevlm.benchmarks.probe import run_probe
    from edgevlm.core.errors import EdgeVLMError

    with pytest.raises(EdgeVLMError, match="memory probe failed"):
        run_probe({"engines": [{"kind": "edgevlm", "fmt": "fp32", "path": str(tmp_path / "missing")}], "threads": 1})


def test_report_carries_machine_versions_and_command(tmp_path):
    from edgevlm.benchmarks.common import Report, md_table

    r = Report("unit", threads=2, quick=True)
    r.add("x: 1.00 ms", kind="t", value_ms=1.0)
    out = r.write(tmp_path / "unit", md_table(r.records, [("kind", "kind"), ("value_ms", "ms")]))
    doc = json.loads((out / "results.json").read_text())
    assert doc["machine"]["threads_used"] == 2 and doc["machine"]["cpu_model"] and doc["machine"]["logical_cores"] >= 1
    assert doc["versions"]["onnxruntime"] and doc["command"] and doc["records"] == [{"kind": "t", "value_ms": 1.0}]
    md = (out / "results.md").read_text()
    assert "| kind | ms |" in md and "| t | 1.00 |" in md and "threads used" in md


def test_bad_options_fail_with_one_line(tmp_path):
    for args, needle in ((["--threads", "0"], "--threads"), (["--suite", "latency", "--sizes", "gpt5"], "gpt5")):
        p = subprocess.run(
            [sys.executable, "-m", "edgevlm.apps.cli", "bench", *args, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_bench_quick_smoke(tmp_path):
    """`edgevlm bench --quick` runs every suite and writes JSON, markdown and plots (numbers not checked)."""
    exe = Path(sys.executable).with_name("edgevlm")
    p = subprocess.run(
        [str(exe), "bench", "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=REPO
    )
    assert p.returncode == 0, p.stderr[-2000:]
    suites = (("footprint", "memory_vs_tasks.png"), ("latency", "tokens_per_s.png"), ("quality", "mini.png"))
    for suite, plot in (*suites, ("serving", "throughput.png")):
        d = tmp_path / suite
        doc = json.loads((d / "results.json").read_text())
        assert doc["quick"] and doc["command"].startswith("edgevlm bench --quick") and doc["records"]
        assert (d / "results.md").read_text().startswith(f"# {suite} benchmark")
        assert (d / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tokens/s" in p.stdout and "peak RSS" in p.stdout and "BLEU" in p.stdout
    from edgevlm.benchmarks.summary import write

    text = write(tmp_path, tmp_path / "docs" / "results.md").read_text()  # docs/results.md, built from those results
    for needle in (
        "## Footprint",
        "## Latency",
        "## Quality",
        "## Serving",
        "x optimum fp32",
        "fraction of bound",
        "(../latency/tokens_per_s.png)",
        "edgevlm bench --quick",
    ):
        assert needle in text
