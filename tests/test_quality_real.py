"""The real-backbone quality suite's plumbing (benchmarks/quality_real.py) on the tiny random Llama and the real
data in ../shared/data: every cell, the fp32 bundle against PyTorch, resumability, results files, the skip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgevlm.benchmarks import quality_plan as qp
from edgevlm.benchmarks import quality_real
from edgevlm.core.errors import ConfigError

TASKS = ["nlg", "dialogue"]  # nlg: distillation; dialogue: perplexity


@pytest.fixture(scope="module")
def suite(tiny_llama_dir, tmp_path_factory):
    missing = qp.missing_data(qp.DATA_ROOT, TASKS)
    if missing:
        pytest.skip(f"real data absent: {missing[0]} (see ../shared/data/README.md)")
    work, out = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("out")
    dest = quality_real.run(str(tiny_llama_dir), "smoke", out, work, TASKS)
    cells = sorted(work.rglob("cells/*.json"))
    first = {c.name: c.stat().st_mtime_ns for c in cells}
    again = quality_real.run(str(tiny_llama_dir), "smoke", out, work, TASKS)
    return dest, again, cells, first, work


def records(dest: Path) -> dict[tuple[str, str], dict]:
    doc = json.loads((dest / "results-smoke.json").read_text())
    return {(r["task"], r["system"]): r for r in doc["records"]}, doc


def test_every_cell_scored(suite):
    dest, _, cells, _, _ = suite
    recs, doc = records(dest)
    systems = {"untrained", "adapter", "full", "bundle-fp32", "bundle-int8", "bundle-int4"}
    assert set(recs) == {(t, s) for t in TASKS for s in systems} | {("nlg", "distilled"), ("nlg", "adapter-mean")}
    assert len(cells) == len(recs)
    for r in recs.values():
        assert r["n"] == qp.PROFILES["smoke"].tasks[r["task"]].eval_sources and 0 <= r["bleu"] <= 100
    assert recs[("dialogue", "adapter")]["perplexity"] > 1
    for t in TASKS:  # the same bottleneck untrained and trained; --full trains the whole backbone
        assert recs[(t, "untrained")]["trainable_pct"] == pytest.approx(recs[(t, "adapter")]["trainable_pct"])
        assert recs[(t, "full")]["trainable_pct"] > recs[(t, "adapter")]["trainable_pct"]
    by = {c.name: json.loads(c.read_text())["predictions"] for c in cells}
    for t in TASKS:  # each quantized row's agreement, recounted here from the cells' own predictions
        ref = by[f"{t}.bundle-fp32.json"]
        for q in ("int8", "int4"):
            got = by[f"{t}.bundle-{q}.json"]
            want = 100.0 * sum(a == b for a, b in zip(got, ref, strict=True)) / len(ref)
            assert recs[(t, f"bundle-{q}")]["same_output_as_fp32_pct"] == pytest.approx(want)
    assert doc["plan"]["profile"] == "smoke" and doc["plan"]["tasks"]["nlg"]["train_rows"] == 16


def test_plan_key_follows_the_plan_not_the_task_subset():
    cpu = qp.get_profile("cpu")
    assert qp.plan_key(qp.get_profile("cpu", ["mt"])) == qp.plan_key(cpu)  # subsets share the profile's cells
    assert qp.plan_key(dataclasses.replace(cpu, name="other", steps=61)) != qp.plan_key(cpu)
    assert qp.plan_key(qp.get_profile("reduced")) != qp.plan_key(cpu)
    assert qp.get_profile("cpu", ["mt"]).mean_init is None and cpu.mean_init == "nlg"


def test_fp32_bundle_decodes_like_pytorch(suite, tmp_path):
    """The runtime's fp32 bundle reproduces the PyTorch adapter's greedy outputs (same held-out sources)."""
    _, _, cells, _, _ = suite
    by = {c.name: json.loads(c.read_text()) for c in cells}
    for t in TASKS:
        assert by[f"{t}.bundle-fp32.json"]["predictions"] == by[f"{t}.adapter.json"]["predictions"]


def test_rerun_skips_finished_cells(suite):
    dest, again, cells, first, _ = suite
    assert again == dest
    assert {c.name: c.stat().st_mtime_ns for c in cells} == first  # no cell recomputed or rewritten
    _, doc = records(dest)
    assert any("none (all cached)" in n for n in doc["notes"])
    md = (dest / "results-smoke.md").read_text()
    assert "## nlg" in md and "## dialogue" in md and "full fine-tuning (PyTorch)" in md
    assert (dest / "results-smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_skips_without_data(tmp_path, capsys):
    assert quality_real.run("smollm2-135m", "cpu", tmp_path, tmp_path, None, tmp_path / "none") is None
    assert "skipped" in capsys.readouterr().out and not any(tmp_path.iterdir())


def test_profile_options_checked():
    with pytest.raises(ConfigError, match="--profile"):
        qp.get_profile("nope")
    with pytest.raises(ConfigError, match="--tasks"):
        qp.get_profile("cpu", ["qa"])
    p = qp.get_profile("cpu", ["mt"])
    assert list(p.tasks) == ["mt"] and p.distill is None


def test_budget_from_measured_steps(suite):
    """The adapters' training time per token is kept in the cells; a later plan's estimate is computed from it."""
    *_, work = suite
    rate, runs = qp.measured_s_per_token(work)
    assert runs == len(TASKS) and rate > 0
    p = qp.PROFILES["cpu"]
    assert qp.estimate(p, 2 * rate)["mt"] > qp.estimate(p, rate)["mt"]
    assert f"median of {runs} measured run(s)" in qp.describe(p, 1.0, (rate, runs))


def test_budget_fits_three_hours_when_quiet():
    """The CPU plan's estimate (from the measured 3.4 s per 8 x 128 adapter step) is within 3 h on a quiet machine
    and grows with the load."""
    est = qp.estimate(qp.PROFILES["cpu"])
    assert sum(est.values()) < 3 * 3600 and set(est) == set(qp.REAL_TASKS)
    assert sum(qp.estimate(qp.PROFILES["cpu"], load=2).values()) > sum(est.values())


@pytest.mark.parametrize(
    "args, needle",
    [(["--profile", "nope"], "--profile: unknown profile 'nope'"), (["--tasks", "qa"], "--tasks: ['qa'] not in")],
)
def test_cli_bad_plan_options_one_line(tmp_path, args, needle):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edgevlm.apps.cli", "bench", "--suite", "quality", "--backbone", "smollm2-135m"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([*cmd, *args, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.experiments
def test_sweep_trains_and_scores_each_setting(suite, tiny_llama_dir):
    """quality_sweep's unit: one adapter per (init, lr) on the plan's rows, scored on its held-out sources; the
    adapter-mean cell of the suite is the same training as init "mean" at the plan's lr."""
    from experiments.quality import quality_sweep

    p = qp.get_profile("smoke", ["nlg"])
    recs = [quality_sweep.one("nlg", p, init, p.lr_adapter, tiny_llama_dir) for init in ("words", "mean")]
    assert [r["init"] for r in recs] == ["words", "mean"] and all(r["n"] == p.tasks["nlg"].eval_sources for r in recs)
    dest, *_ = suite
    cell, _ = records(dest)
    assert recs[1]["bleu"] == pytest.approx(cell[("nlg", "adapter-mean")]["bleu"])
    assert recs[0]["bleu"] == pytest.approx(cell[("nlg", "adapter")]["bleu"])


@pytest.fixture(scope="module")
def gate(tiny_llama_dir, tmp_path_factory):
    """The gate profile's systems (int4-trained adapter, two LoRAs beside the adapter) on the smoke plan."""
    missing = qp.missing_data(qp.DATA_ROOT, ["nlg"])
    if missing:
        pytest.skip(f"real data absent: {missing[0]} (see ../shared/data/README.md)")
    g = qp.PROFILES["gate"]
    smoke = dataclasses.replace(
        qp.PROFILES["smoke"], name="smoke-gate", tasks={"nlg": qp.PROFILES["smoke"].tasks["nlg"]}
    )
    plan = dataclasses.replace(
        smoke, **{k: getattr(g, k) for k in ("quants", "distill", "mean_init", "full", "lora", "trained_for")}
    )
    work, out = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(qp.PROFILES, "smoke-gate", plan)
        dest = quality_real.run(str(tiny_llama_dir), "smoke-gate", out, work, ["nlg"])
    cells = {c.name.split(".", 1)[1][: -len(".json")]: json.loads(c.read_text()) for c in work.rglob("cells/*.json")}
    doc = json.loads((dest / "results-smoke-gate.json").read_text())
    return {r["system"]: {**r, **cells[r["system"]]} for r in doc["records"]}, dest, work


def test_gate_scores_lora_and_quant_trained_systems_through_bundles(gate, tiny_llama_dir):
    from edgevlm.benchmarks import quality_methods as qm
    from edgevlm.train.backbone import load_backbone

    recs, dest, work = gate
    want = {"untrained", "adapter", "adapter-int4-bundle-int4"}
    want |= {f"{s}bundle-{q}" for s in ("", "lora-", "lora-qv8-") for q in ("fp32", "int4")}
    assert set(recs) == want
    assert recs["bundle-fp32"]["predictions"] == recs["adapter"]["predictions"]  # the adapter beside LoRA inputs
    assert recs["lora-bundle-fp32"]["method"] == recs["lora-qv8-bundle-int4"]["method"] == "lora"
    assert recs["adapter-int4-bundle-int4"]["method"] == "adapter"
    # matched LoRA: the rank whose parameter count is nearest the adapter's (adapters + task embeddings)
    per = qm.per_rank_params(load_backbone(tiny_llama_dir).model, qp.LORA["lora"][0])
    n_adapter = recs["adapter"]["trainable_pct"]
    share_per_rank = 100.0 * per / sum(p.numel() for p in load_backbone(tiny_llama_dir).model.parameters())
    assert abs(recs["lora-bundle-fp32"]["trainable_pct"] - n_adapter) <= share_per_rank / 2 + 1e-6
    assert recs["lora-qv8-bundle-fp32"]["trainable_pct"] == pytest.approx(
        100.0
        * 8
        * qm.per_rank_params(load_backbone(tiny_llama_dir).model, ("q_proj", "v_proj"))
        / (100.0 * per / share_per_rank),
        rel=1e-3,
    )
    for s in ("lora", "lora-qv8"):  # each LoRA's int4 row compared with its own fp32 bundle
        same = sum(
            a == b for a, b in zip(recs[f"{s}-bundle-int4"]["predictions"], recs[f"{s}-bundle-fp32"]["predictions"])
        )
        assert recs[f"{s}-bundle-int4"]["same_output_as_fp32_pct"] == pytest.approx(
            100.0 * same / recs[f"{s}-bundle-fp32"]["n"]
        )
    trained = json.loads(next(work.rglob("nlg-adapter-int4/nlg/adapter.json")).read_text())
    assert trained["training"]["quant"] == "int4"
    md = (dest / "results-smoke-gate.md").read_text()
    assert "LoRA rank 8 on q/v: int4 bundle (runtime)" in md and "adapter trained for int4: int4 bundle (runtime)" in md


def test_plateau_is_where_full_fine_tuning_stops_gaining():
    from edgevlm.benchmarks import quality_curves as qc

    assert qc.plateau([(30, 40.0), (60, 50.0), (120, 50.3), (240, 52.0)]) == 60  # +0.3 after 60 steps
    assert qc.plateau([(30, 40.0), (60, 45.0), (120, 49.0)]) == 120  # never flattens: the last budget
    rows = [
        {"curve": s, "steps": n, "bleu": m}
        for s, pts in {"full": [(30, 40.0), (60, 50.0), (120, 50.1)], "adapter": [(30, 30.0), (60, 48.5), (120, 51.0)],
                       "adapter-4x": [(30, 35.0), (60, 49.0), (120, 50.0)]}.items()
        for n, m in pts
    ]  # fmt: skip
    assert qc.judge(rows, "bleu") == {"steps": 60, "full": 50.0, "adapter": 48.5, "adapter-4x": 49.0, "gap": -1.5}


def test_curves_train_every_system_at_every_budget(tiny_llama_dir, tmp_path):
    missing = qp.missing_data(qp.DATA_ROOT, ["nlg"])
    if missing:
        pytest.skip(f"real data absent: {missing[0]} (see ../shared/data/README.md)")
    smoke = qp.PROFILES["smoke"]
    plan = dataclasses.replace(qp.PROFILES["curves"], name="smoke-curves", batch_size=smoke.batch_size, budgets=(1, 3),
                               tasks={"nlg": smoke.tasks["nlg"]})  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(qp.PROFILES, "smoke-curves", plan)
        dest = quality_real.run(str(tiny_llama_dir), "smoke-curves", tmp_path / "out", tmp_path / "work", ["nlg"])
    doc = json.loads((dest / "results-smoke-curves.json").read_text())
    got = {r["system"]: r for r in doc["records"]}
    assert set(got) == {f"{s}@{n}" for s in ("adapter", "adapter-4x", "full") for n in (1, 3)}
    adapters = {n: json.loads(next((tmp_path / "work").rglob(f"nlg-{n}/nlg/adapter.json")).read_text())
                for n in ("adapter@3", "adapter-4x@3")}  # fmt: skip
    assert adapters["adapter-4x@3"]["task"]["bottleneck"] == 4 * adapters["adapter@3"]["task"]["bottleneck"]
    assert adapters["adapter@3"]["training"]["steps"] == 3 and got["full@3"]["trainable_pct"] == 100.0
    md = (dest / "results-smoke-curves.md").read_text()
    assert "## nlg: bleu by training steps" in md and "| adapter-4x |" in md and "Full fine-tuning flattens at" in md
    assert (dest / "results-smoke-curves.png").read_bytes()[:4] == b"\x89PNG"
