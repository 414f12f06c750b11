"""The onnxruntime-genai peer's wiring: its environment checks, one-line errors, the same-width ratios, and, where
``make bench-peers`` made the genai environment, its builder's graph against PyTorch (fp32: the same logits), the
LoRA adapter file against PEFT, and the worker protocol. Nothing here needs the genai environment to pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevlm.benchmarks import ortgenai, peers
from edgevlm.benchmarks.common import Report
from edgevlm.benchmarks.worker import label
from edgevlm.core.errors import ConfigError


def test_unavailable_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv(ortgenai.PYTHON_ENV, str(tmp_path / "genai" / "bin" / "python"))
    why = ortgenai.unavailable()
    assert str(tmp_path / "genai" / "bin" / "python") in why and "make bench-peers" in why
    monkeypatch.setenv(ortgenai.PYTHON_ENV, sys.executable)
    monkeypatch.setenv(ortgenai.BUILDER_ENV, str(tmp_path))
    assert f"not unpacked in {tmp_path}" in ortgenai.unavailable()


def test_workers_of_the_peer_run_its_own_python(monkeypatch, tmp_path):
    monkeypatch.setenv(ortgenai.PYTHON_ENV, str(tmp_path / "py"))
    assert ortgenai.python_for(ortgenai.KIND) == str(tmp_path / "py")
    assert ortgenai.python_for("edgevlm") == ortgenai.python_for("llamacpp") == sys.executable
    assert label(ortgenai.KIND, "int4/passive", None) == "onnxruntime-genai int4/passive"


def test_engine_and_builder_errors_are_one_line(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="genai_config.json not found"):
        ortgenai.OrtGenaiEngine(ortgenai.KIND, "int4", tmp_path, 1)
    monkeypatch.setenv(ortgenai.BUILDER_ENV, str(tmp_path))  # an empty builder directory: nothing to run
    with pytest.raises(ConfigError, match="builder on .* failed: .*No module named"):
        ortgenai.build(tmp_path, tmp_path / "out")


def test_threads_and_spinning_go_into_the_decoder_session_options():
    so = ortgenai.session_overlay(2, passive=True)["model"]["decoder"]["session_options"]
    assert so == {"intra_op_num_threads": 2, "inter_op_num_threads": 1, "session.intra_op.allow_spinning": "0"}
    so = ortgenai.session_overlay(1, passive=False)["model"]["decoder"]["session_options"]
    assert so == {"intra_op_num_threads": 1, "inter_op_num_threads": 1}  # as shipped: ORT's threads spin


def test_profile_counts_kernels_per_decode_step_without_the_prefill():
    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(ts, op, dur):
        return {"cat": "Node", "name": f"n{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    trace = [run(0, 9000), node(10, "MatMulNBits", 7000), run(10000, 3000), node(10010, "MatMulNBits", 2000)]
    trace += [node(10020, "GroupQueryAttention", 500), run(20000, 5000), node(20010, "MatMulNBits", 4000)]
    got = ortgenai.per_step(trace)
    assert got["steps"] == 2 and got["run_ms_per_step"] == pytest.approx(4.0)
    assert got["ops_ms"] == {"MatMulNBits": pytest.approx(3.0), "GroupQueryAttention": pytest.approx(0.25)}
    assert list(got["ops_ms"]) == ["MatMulNBits", "GroupQueryAttention"]  # largest first
    with pytest.raises(ConfigError, match="1 model runs"):
        ortgenai.per_step([run(0, 1)])


def _row(engine, kind, fmt, tps):
    return {"engine": engine, "kind_": kind, "fmt": fmt, "tokens_per_s": tps, "prefill_short_ms": 10.0,
            "prefill_long_ms": 40.0}  # fmt: skip


def test_peer_ratios_compare_each_peer_at_the_same_width():
    rows = [
        _row("edgevlm int4 task=x", "edgevlm", "int4", 100.0),
        _row("edgevlm int8 task=x", "edgevlm", "int8", 120.0),
        _row("llama.cpp Q4_0/passive", "llamacpp", "Q4_0/passive", 90.0),
        _row("onnxruntime-genai int4", "ortgenai", "int4", 50.0),
        _row("onnxruntime-genai int4/passive", "ortgenai", "int4/passive", 150.0),
    ]
    report = Report("latency", 2, True)
    peers.peer_ratios(report, "s", rows)
    got = [(r["engine"], r["peer"], r["what"], round(r["decode_x"], 3)) for r in report.records]
    assert got == [
        ("edgevlm int4 task=x", "llama.cpp Q4_0/passive", "same width, threads sleep", round(100 / 90, 3)),
        ("edgevlm int4 task=x", "onnxruntime-genai int4/passive", "same width, threads sleep", round(100 / 150, 3)),
        ("edgevlm int8 task=x", "onnxruntime-genai int4/passive", "best vs best", 0.8),
    ]


# ---------------------------------------------------------------- with the genai environment

_LOGITS = r"""
import json, sys
import numpy as np, onnxruntime_genai as og
model = og.Model(sys.argv[1])
ids, adapter = json.loads(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None
params = og.GeneratorParams(model)
params.set_search_options(do_sample=False, max_length=len(ids) + 2, min_length=len(ids) + 2)
gen = og.Generator(model, params)
if adapter:
    adapters = og.Adapters(model)
    adapters.load(adapter, "a")
    gen.set_active_adapter(adapters, "a")
gen.append_tokens(ids)
print(json.dumps(np.asarray(gen.get_logits()).reshape(-1).tolist()))
"""
IDS = [5, 17, 99, 3, 250, 7, 8, 9]


def _genai_logits(model_dir, adapter=None) -> np.ndarray:
    args = [str(ortgenai.genai_python()), "-c", _LOGITS, str(model_dir), json.dumps(IDS)]
    r = subprocess.run(args + ([str(adapter)] if adapter else []), capture_output=True, text=True, check=True)
    return np.array(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def genai_ready():
    why = ortgenai.unavailable()
    if why:
        pytest.skip(why)


def test_genai_fp32_graph_matches_pytorch_and_decodes_exact_counts(genai_ready, tiny_llama_dir, tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    from edgevlm.benchmarks.bandwidth import onnx_weight_bytes
    from edgevlm.benchmarks.worker import Worker

    out = ortgenai.build(tiny_llama_dir, tmp_path / "fp32", precision="fp32")
    with torch.no_grad():
        want = LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()(torch.tensor([IDS])).logits[0, -1]
    np.testing.assert_allclose(_genai_logits(out), want.numpy(), atol=1e-4, rtol=1e-4)
    w = Worker(ortgenai.KIND, "fp32" + ortgenai.PASSIVE, out, 1)
    try:
        assert w.generate(8, 5) > 0  # exactly 5 new tokens, or the worker handle raises
        want = onnx_weight_bytes(Path(out) / "model.onnx")["bytes_per_token"]  # counted in this process
        assert w.call(op="weight_bytes")["bytes_per_token"] == want
    finally:
        w.close()


@pytest.fixture(scope="module")
def peft_ready(genai_ready):
    """PEFT is in setup.cfg's ``peers`` extra, not in requirements.lock: where it is absent, say so (a skip), not an
    ImportError inside a test the genai environment alone switched on."""
    pytest.importorskip("peft", reason="peft is not installed (it is in setup.cfg's peers extra)")


def test_genai_lora_adapter_file_gives_peft_logits(peft_ready, tiny_llama_dir, tmp_path):
    """The builder's LoRA, extracted into an adapter file: active = PEFT's logits, inactive = the base model's."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0))
    with torch.no_grad():
        for name, t in lora.named_parameters():
            if "lora_B" in name:
                t.copy_(torch.randn(t.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    lora.save_pretrained(tmp_path / "peft")
    with torch.no_grad():
        plain = LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()(torch.tensor([IDS])).logits[0, -1]
        reloaded = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)), tmp_path / "peft")
        want = reloaded.eval()(torch.tensor([IDS])).logits[0, -1].numpy()
    out = ortgenai.build(tiny_llama_dir, tmp_path / "m", adapter=tmp_path / "peft", precision="fp32")
    assert np.abs(want - plain.numpy()).max() > 0.1  # the LoRA changes the output
    np.testing.assert_allclose(_genai_logits(out, out / ortgenai.ADAPTER_FILE), want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(_genai_logits(out), plain.numpy(), atol=1e-4, rtol=1e-4)


def test_genai_lora_rows_run_the_suites_lora_active(peft_ready, tiny_llama_dir, tmp_path):
    """The suite's genai LoRA rows on the tiny Llama (int4 builder, PEFT rank 8 on q/v): the adapter file moves the
    logits as PEFT's LoRA moves PyTorch's (correlated, as large: the LoRA runs in fp32, but on the activations of an
    int4 base; the fp32 test above checks equality), and both rows decode exact counts."""
    import torch
    from peft import PeftModel
    from tqdm.auto import tqdm
    from transformers import LlamaForCausalLM

    from edgevlm.benchmarks.fixtures import Workspace
    from edgevlm.benchmarks.worker import Worker

    ws = Workspace(tmp_path / "ws")
    with tqdm(disable=True) as pbar:
        engines = peers.genai_lora_engines(ws, "tiny-llama", tiny_llama_dir, 1, pbar)
    assert [e.fmt for e in engines] == ["int4+lora", "int4/passive+lora"]
    model = engines[0].path
    base = LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    with torch.no_grad():
        before = base(torch.tensor([IDS])).logits[0, -1].numpy()
        lora = PeftModel.from_pretrained(base, str(peers.peft_lora(ws, "tiny-llama", tiny_llama_dir))).eval()
        want = lora(torch.tensor([IDS])).logits[0, -1].numpy() - before
    got = _genai_logits(model, model / ortgenai.ADAPTER_FILE) - _genai_logits(model)
    corr = np.corrcoef(got, want)[0, 1]
    assert np.abs(got).max() > 0.5 * np.abs(want).max()  # the LoRA is on
    assert corr > 0.8  # PEFT's change (the int4 base feeds the LoRA other activations: not equal)
    for e in engines:
        w = Worker(e.kind, e.fmt, e.path, 1)
        try:
            assert w.generate(8, 5) > 0  # exactly 5 new tokens, or the worker handle raises
        finally:
            w.close()
