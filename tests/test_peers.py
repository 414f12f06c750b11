"""The latency suite's peers: GGUF conversion with llama.cpp's converter checked against PyTorch, weight bytes,
the same-width comparison, STREAM-style bandwidth. llama.cpp parts skip when the peers extra is absent."""

from __future__ import annotations

import numpy as np
import pytest

from edgevlm.benchmarks import peers
from edgevlm.benchmarks.common import Report
from edgevlm.benchmarks.llamacpp import gguf_weight_bytes
from edgevlm.benchmarks.stream import stream


def _gguf(path, tensors: dict[str, np.ndarray]):
    import gguf

    w = gguf.GGUFWriter(str(path), "gpt2")
    for name, value in tensors.items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_weight_bytes_counts_the_tied_table_once_as_lm_head(tmp_path):
    t = {"token_embd.weight": np.zeros((50, 8), np.float32), "position_embd.weight": np.zeros((16, 8), np.float32)}
    t["blk.0.ffn_up.weight"] = np.zeros((32, 8), np.float32)
    tied = gguf_weight_bytes(_gguf(tmp_path / "tied.gguf", t))
    assert tied["bytes_per_token"] == (50 * 8 + 32 * 8) * 4  # the token table is the output matrix
    assert tied["gather_only_bytes"] == 16 * 8 * 4
    untied = gguf_weight_bytes(_gguf(tmp_path / "untied.gguf", {**t, "output.weight": np.zeros((50, 8), np.float32)}))
    assert untied["bytes_per_token"] == (50 * 8 + 32 * 8) * 4  # output read, token table gathered by row
    assert untied["gather_only_bytes"] == (16 * 8 + 50 * 8) * 4


def _row(engine, kind, fmt, tps, short=10.0, long_=40.0):
    return {"engine": engine, "kind_": kind, "fmt": fmt, "tokens_per_s": tps, "prefill_short_ms": short,
            "prefill_long_ms": long_}  # fmt: skip


def test_peer_ratios_match_width_and_thread_policy():
    """Each edgevlm row meets the faster peer row of its width whose threads wait the same way (sleeping edgevlm vs
    a peer's /passive, edgevlm /spin vs a peer as shipped); no such peer row, no ratio."""
    rows = [
        _row("edgevlm int4 task=x", "edgevlm", "int4", 100.0),
        _row("edgevlm int8 task=x", "edgevlm", "int8", 80.0),
        _row("edgevlm int8/spin task=x", "edgevlm", "int8/spin", 95.0),
        _row("llama.cpp Q4_0", "llamacpp", "Q4_0", 20.0),
        _row("llama.cpp Q4_0/passive", "llamacpp", "Q4_0/passive", 90.0, short=5.0, long_=20.0),
        _row("llama.cpp Q8_0", "llamacpp", "Q8_0", 85.0),
    ]
    report = Report("latency", 2, True)
    peers.peer_ratios(report, "s", rows)
    got = {(r["engine"], r["peer"], r["what"]): r for r in report.records if r["kind"] == "peer_ratio"}
    same = got[("edgevlm int4 task=x", "llama.cpp Q4_0/passive", "same width, threads sleep")]
    assert same["decode_x"] == pytest.approx(100 / 90)
    assert same["prefill_short_x"] == pytest.approx(0.5)  # llama.cpp's prompt is twice as fast
    spin = got[("edgevlm int8/spin task=x", "llama.cpp Q8_0", "same width, threads spin")]
    assert spin["decode_x"] == pytest.approx(95 / 85)
    assert not [k for k in got if k[0] == "edgevlm int8 task=x"]  # no sleeping Q8_0 row to meet
    best = [r for r in report.records if r.get("what") == "best vs best"]
    assert [(r["engine"], r["peer"]) for r in best] == [("edgevlm int4 task=x", "llama.cpp Q4_0/passive")]


def test_task_ratios_meet_each_peer_with_its_lora_and_carry_the_targets(capsys):
    """An edgevlm row with a task active meets each peer twice at its width and thread policy, with no adapter and
    with its LoRA active; int4 rows carry issue 25's targets (genai: 0.9x plain, 1.25x LoRA; llama.cpp: 1.1x LoRA),
    and a LoRA row is never the "best peer"."""
    rows = [
        {**_row("edgevlm int4 task=x", "edgevlm", "int4", 100.0), "task": "x"},
        {**_row("edgevlm int8 task=x", "edgevlm", "int8", 60.0), "task": "x"},
        _row("llama.cpp Q4_0/passive", "llamacpp", "Q4_0/passive", 95.0),
        _row("llama.cpp Q4_0/passive+lora", "llamacpp", "Q4_0/passive+lora", 80.0),
        _row("llama.cpp Q4_0+lora", "llamacpp", "Q4_0+lora", 500.0),  # spins: another policy
        _row("llama.cpp Q8_0/passive+lora", "llamacpp", "Q8_0/passive+lora", 50.0),
        _row("onnxruntime-genai int4/passive", "ortgenai", "int4/passive", 105.0),
        _row("onnxruntime-genai int4/passive+lora", "ortgenai", "int4/passive+lora", 90.0),
    ]
    report = Report("latency", 2, True)
    peers.peer_ratios(report, "s", rows)
    best = report.records.pop()
    assert (best["engine"], best["peer"], best["what"]) == ("edgevlm int4 task=x", rows[6]["engine"], "best vs best")
    got = {(r["engine"].split()[1], r["peer"]): r for r in report.records}
    want = {  # (edgevlm mode, peer): (decode x, target, met)
        ("int4", "llama.cpp Q4_0/passive"): (100 / 95, None, None),
        ("int4", "onnxruntime-genai int4/passive"): (100 / 105, 0.9, True),
        ("int4", "llama.cpp Q4_0/passive+lora"): (100 / 80, 1.1, True),
        ("int4", "onnxruntime-genai int4/passive+lora"): (100 / 90, 1.25, False),
        ("int8", "llama.cpp Q8_0/passive+lora"): (60 / 50, None, None),
    }
    for key, (x, goal, met) in want.items():
        r = got.pop(key)
        assert (r["decode_x"], r["target_x"], r["target_met"]) == (pytest.approx(x), goal, met), key
    assert report.records[2]["what"] == "with its LoRA, same width, threads sleep"
    line = next(x for x in capsys.readouterr().out.splitlines() if "vs onnxruntime-genai int4/passive+lora" in x)
    assert "decode 1.11x (100.0 vs 90.0 tokens/s); target >= 1.25x: missed" in line
    assert not got  # no other comparison


def test_stream_counts_bytes_as_stream_does(monkeypatch):
    """With each timed pass taking a known time (a fake clock), the rates are STREAM's byte counts over it: Copy
    moves 2 arrays, Add 3; best and median of the repeats."""
    import itertools

    from edgevlm.benchmarks import stream as stream_mod

    steps = itertools.cycle([0.004, 0.002, 0.008])  # seconds per pass, one per start/stop pair
    clock = {"now": 0.0, "calls": 0}

    def fake() -> float:
        clock["calls"] += 1
        if clock["calls"] % 2 == 0:
            clock["now"] += next(steps)
        return clock["now"]

    monkeypatch.setattr(stream_mod.time, "perf_counter", fake)
    r = stream(threads=2, mb=16, repeats=3)
    array = 16 * 2**20  # bytes per float64 array
    assert r["threads"] == 2 and r["copy_gb_per_s"] == pytest.approx(2 * array / 0.002 / 1e9)
    assert r["copy_median_gb_per_s"] == pytest.approx(2 * array / 0.004 / 1e9)
    assert r["add_gb_per_s"] == pytest.approx(3 * array / 0.002 / 1e9)
    assert r["add_median_gb_per_s"] == pytest.approx(3 * array / 0.004 / 1e9)


@pytest.fixture(scope="module")
def llamacpp_ready():
    why = peers.unavailable()
    if why:
        pytest.skip(why)


def test_llamacpp_f32_conversion_matches_pytorch(llamacpp_ready, tiny_dir, tmp_path):
    """llama.cpp's converter + runtime on the tiny GPT-2: the prompt's next-token logits equal PyTorch's."""
    import torch
    from transformers import GPT2LMHeadModel

    from edgevlm.benchmarks.gguf_models import gguf_model
    from edgevlm.benchmarks.llamacpp import LlamaCppEngine

    path = gguf_model(tiny_dir, tmp_path, "F32")
    eng = LlamaCppEngine("llamacpp", "F32", path, threads=1)
    eng.load()
    ids = eng.prompt(12)
    assert len(ids) == 12
    eng.model.eval(ids)
    import llama_cpp

    got = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(eng.model._ctx.ctx, -1), shape=(eng.model.n_vocab(),))
    with torch.no_grad():
        want = GPT2LMHeadModel.from_pretrained(str(tiny_dir)).eval()(torch.tensor([ids])).logits[0, -1].numpy()
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)
    assert eng.generate(ids, 5) == 5


def test_llamacpp_lora_matches_peft(llamacpp_ready, tiny_dir, tmp_path):
    """A rank-8 PEFT LoRA converted with llama.cpp's LoRA converter: llama.cpp + --lora gives PEFT's logits."""
    import shutil

    import llama_cpp
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import GPT2LMHeadModel

    from edgevlm.benchmarks.gguf_models import gguf_model, lora
    from edgevlm.benchmarks.llamacpp import LORA, LlamaCppEngine

    model = gguf_model(tiny_dir, tmp_path / "m", "F32")
    shutil.copy(lora(tiny_dir, tmp_path / "lora"), model.with_name("lora.gguf"))
    logits = {}
    for fmt in ("F32", "F32" + LORA):
        eng = LlamaCppEngine("llamacpp", fmt, model, threads=1)
        eng.load()
        ids = eng.prompt(10)
        eng.model.eval(ids)
        ptr = llama_cpp.llama_get_logits_ith(eng.model._ctx.ctx, -1)
        logits[fmt] = np.ctypeslib.as_array(ptr, shape=(eng.model.n_vocab(),)).copy()
    base = GPT2LMHeadModel.from_pretrained(str(tiny_dir)).eval()
    peft_dir = tmp_path / "lora" / "peft"
    tensors = load_file(peft_dir / "adapter_model.safetensors")
    for a in [k for k in tensors if ".lora_A." in k]:  # back to PEFT's orientation (see gguf_models.lora)
        b = a.replace(".lora_A.", ".lora_B.")
        tensors[a], tensors[b] = tensors[b].T.contiguous(), tensors[a].T.contiguous()
    save_file(tensors, peft_dir / "adapter_model.safetensors")
    with torch.no_grad():
        want = PeftModel.from_pretrained(base, str(peft_dir)).eval()(torch.tensor([ids]))
    want = want.logits[0, -1].numpy()
    effect = np.abs(logits["F32"] - want).max()  # what the LoRA changes
    err = np.abs(logits["F32" + LORA] - want).max()  # llama.cpp keeps its KV cache in f16: ~1e-3 off
    assert err < 1e-2 and err < 0.1 * effect, (err, effect)


def _llamacpp_logits(eng, ids) -> np.ndarray:
    import llama_cpp

    eng.load()
    eng.model.reset()
    eng.model.eval(ids)
    ptr = llama_cpp.llama_get_logits_ith(eng.model._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(eng.model.n_vocab(),)).copy()


def test_llamacpp_lora_rows_apply_the_llama_lora(llamacpp_ready, tmp_path):
    """The suite's llama.cpp LoRA rows on a tiny Llama (PEFT rank 8 on q/v, llama.cpp's converters, Q8_0): the
    LoRA is active (the logits move by PEFT's change, not by Q8_0's error) in both thread policies, and a
    generation decodes exact counts. (Its table has room for the 3 special tokens transformers' Llama tokenizer
    class adds to the tiny tokenizer: llama.cpp's converter wants every token id inside the table.)"""
    import torch
    from llama_helpers import make_tiny_llama
    from peft import PeftModel
    from tqdm.auto import tqdm
    from transformers import LlamaForCausalLM

    from edgevlm.benchmarks.fixtures import Workspace
    from edgevlm.benchmarks.gguf_models import gguf_model
    from edgevlm.benchmarks.llamacpp import LlamaCppEngine

    tiny_llama_dir = make_tiny_llama(tmp_path / "llama", vocab_size=1056)
    ws = Workspace(tmp_path / "ws")
    plain = LlamaCppEngine("llamacpp", "Q8_0", gguf_model(tiny_llama_dir, tmp_path / "q8", "Q8_0"), threads=1)
    with tqdm(disable=True) as pbar:
        engines = peers.llamacpp_lora_engines(ws, "tiny-llama", tiny_llama_dir, 1, pbar, [plain])
    assert [e.fmt for e in engines] == ["Q8_0+lora", "Q8_0/passive+lora"]
    ids = [5, 17, 99, 3, 250, 7, 8, 9]
    base = LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    with torch.no_grad():
        before = base(torch.tensor([ids])).logits[0, -1].numpy()
        peft = PeftModel.from_pretrained(base, str(peers.peft_lora(ws, "tiny-llama", tiny_llama_dir))).eval()
        want = peft(torch.tensor([ids])).logits[0, -1].numpy()
    effect = np.abs(want - before).max()
    no_lora = _llamacpp_logits(plain, ids)
    lora_bytes = 3 * 2 * 8 * 64 * 4 + 3 * 8 * (64 + 32) * 4  # 3 layers: A of q and v [8, 64], B [64, 8] and [32, 8]
    assert engines[0].weight_bytes()["bytes_per_token"] == plain.weight_bytes()["bytes_per_token"] + lora_bytes
    for e in engines:
        got = _llamacpp_logits(e, ids)
        assert np.abs(got - no_lora).max() > 0.5 * effect  # the LoRA is on
        np.testing.assert_allclose(got - no_lora, want - before, atol=0.2 * effect)
        assert e.generate(ids, 6) == 6
