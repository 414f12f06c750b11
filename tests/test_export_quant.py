"""Exporter, int8/int4: adapter inputs survive, op counts, greedy agreement with fp32, KV cache == full re-run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from export_helpers import TASKS, lora, task_prompts

from edgevlm.core import bundle, names
from edgevlm.core.errors import ExportError
from edgevlm.export import verify
from edgevlm.export.adapters import read_ort_adapter
from edgevlm.export.graph import build_graph
from edgevlm.export.quantize import check_adapter_inputs, nbits

N_NEW = 16


@pytest.fixture(scope="module")
def prompts(tiny_backbone):
    return task_prompts(tiny_backbone.tokenizer, tiny_backbone.model.config.vocab_size, n=8)


@pytest.fixture(scope="module")
def sessions(tiny_bundle):
    return {q: verify.session(str(tiny_bundle(q) / bundle.BACKBONE_FILE)) for q in bundle.QUANT_MODES}


def _selector(root, task):
    m = bundle.load_manifest(root, verify=False)
    return lora(root / m.tasks[task].adapter_file) if task else None


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_adapter_inputs_survive_quantization(tiny_bundle, quant):
    root = tiny_bundle(quant)
    m = bundle.load_manifest(root, verify=True)
    assert m.backbone.quantization == quant
    model = onnx.load(root / bundle.BACKBONE_FILE)
    inputs = {i.name: i for i in model.graph.input}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    n_layer, n_embd = m.backbone.n_layer, m.backbone.n_embd
    for n in names.adapter_names(n_layer):
        assert inputs[n].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        declared = [d.dim_param or d.dim_value for d in inputs[n].type.tensor_type.shape.dim]
        assert declared == names.symbolic_adapter_shape(n, n_embd)
        assert inits[n].dtype == np.float32 and np.all(inits[n] == names.identity_value(n))
    ops = m.export_log["op_counts"]["final"]
    assert ops["com.microsoft.MatMulNBits"] == 4 * n_layer + 1  # every backbone linear + the LM head
    assert ops["com.microsoft.GatherBlockQuantized"] == 1  # the token table, on the LM head's blocks (tied)
    weights = set(inits) - set(names.adapter_names(n_layer))
    assert not [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    bits, zps = {}, 0  # (bits, accuracy_level) -> count
    for n in model.graph.node:
        if n.op_type == "MatMulNBits":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            bits[a["bits"], a.get("accuracy_level", 0)] = bits.get((a["bits"], a.get("accuracy_level", 0)), 0) + 1
            zps += len(n.input) > 3 and n.input[3] != ""
            assert len(n.input) in (3, 4, 6), n.input  # no float residual inputs: weight, scales[, zp][, bias]
    assert bits == {(8 if quant == "int8" else 4, 4): 4 * n_layer + 1}, bits
    assert zps == (0 if quant == "int8" else 4 * n_layer)  # int4 body: integer zero points; LM head symmetric
    gather = next(n for n in model.graph.node if n.op_type == "GatherBlockQuantized")
    head = next(n for n in model.graph.node if n.name.startswith("lm_head/MatMul"))
    assert gather.input[2] == head.input[2]  # tied: the head's scales, and its codes in the gather's 2-D layout
    codes, table = inits[head.input[1]], inits[gather.input[0]]
    assert codes.ndim == 3 and table.ndim == 2 and np.array_equal(codes.reshape(table.shape), table)
    assert codes.dtype == np.uint8 and inits[head.input[2]].dtype == np.float32


def test_quantizer_without_exclusions_loses_adapter_inputs(tiny_backbone):
    model = build_graph(tiny_backbone.model)
    with pytest.raises(ExportError, match="adapter input"):
        check_adapter_inputs(nbits(model, 4, 0, skip=[]), "int4")


def test_quantized_bundles_are_smaller(tiny_bundle):
    sizes = {
        q: sum(p.stat().st_size for p in tiny_bundle(q).glob(f"{bundle.BACKBONE_FILE}*")) for q in bundle.QUANT_MODES
    }
    assert all((tiny_bundle(q) / f"{bundle.BACKBONE_FILE}.data").is_file() for q in bundle.QUANT_MODES)  # weights file
    assert sizes["int4"] < sizes["int8"] < 0.5 * sizes["fp32"], sizes


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_run_options_selection_equals_explicit_feeds_quantized(tiny_bundle, sessions, prompts, quant):
    root = tiny_bundle(quant)
    m = bundle.load_manifest(root, verify=False)
    for task, t in m.tasks.items():
        ids = np.array([prompts[task][0]])
        args = (ids, np.ones(ids.shape), verify.empty_past(m.backbone))
        via_ro, _ = verify.step(sessions[quant], *args, run_options=_selector(root, task))
        explicit, _ = verify.step(sessions[quant], *args, read_ort_adapter(root / t.adapter_file))
        np.testing.assert_array_equal(via_ro, explicit)


def agreement(sessions, root_fp32, root_q, quant, prompts) -> tuple[float, float]:
    """(teacher-forced top-1 agreement, free-running position agreement) of ``quant`` with fp32 greedy, all tasks."""
    cfg = bundle.load_manifest(root_fp32, verify=False).backbone
    tf = free = total = 0
    for task in [None, *TASKS]:
        free_task = free
        for p in prompts[task]:
            ref = verify.greedy(sessions["fp32"], cfg, p, N_NEW, run_options=_selector(root_fp32, task))
            full = np.array([p + ref])
            logits, _ = verify.step(
                sessions[quant], full, np.ones(full.shape), verify.empty_past(cfg), run_options=_selector(root_q, task)
            )
            tf += int((logits[0, len(p) - 1 : -1].argmax(-1) == np.array(ref)).sum())
            got = verify.greedy(sessions[quant], cfg, p, N_NEW, run_options=_selector(root_q, task))
            free += sum(a == b for a, b in zip(got, ref))
            total += len(ref)
        print(f"{quant} task={task}: free-running agreement {(free - free_task) / (N_NEW * len(prompts[task])):.3f}")
    return tf / total, free / total


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantized_greedy_agreement_with_fp32(tiny_bundle, sessions, prompts, quant, record_property):
    teacher_forced, free_running = agreement(sessions, tiny_bundle("fp32"), tiny_bundle(quant), quant, prompts)
    record_property(f"{quant}_agreement", {"teacher_forced": teacher_forced, "free_running": free_running})
    print(f"{quant}: teacher-forced top-1 agreement {teacher_forced:.3f}, free-running {free_running:.3f}")
    # Per-token greedy agreement (same fp32 prefix); free-running agreement counts every position after a first
    # near-tie flip as wrong too. int8 measured 0.97-0.98 / 0.91-0.93 over repeated runs. int4 is 4-bit down to the
    # LM head with integer zero points (the speed recipe, no float-minimum residual terms): measured 0.90 / 0.79;
    # its quality is judged on the task (adapters trained with --quant int4), not by agreement with fp32.
    floor = {"int8": (0.95, 0.88), "int4": (0.88, 0.74)}[quant]
    assert teacher_forced >= floor[0] and free_running >= floor[1]


# Largest |cached - re-run| logit difference allowed per mode: fp32 is exact up to float rounding; the
# per-token activation quantization of int8 (every layer) and int4 (its 8-bit LM head) jitters (int8 measured
# <= 0.035 on the tiny bundle; ORT's quantize_dynamic reached 0.9). Tokens must match wherever the top-2 gap
# exceeds twice the bound.
CACHE_TOL = {"fp32": 1e-4, "int8": 0.1, "int4": 0.1}


@pytest.mark.parametrize("quant", bundle.QUANT_MODES)
def test_cached_decoding_equals_full_rerun(tiny_bundle, sessions, prompts, quant):
    root = tiny_bundle(quant)
    cfg = bundle.load_manifest(root, verify=False).backbone
    for task in [None, *TASKS]:
        for p in prompts[task][:2]:
            ro = _selector(root, task)
            cached = verify.greedy(sessions[quant], cfg, p, N_NEW, run_options=ro)
            if CACHE_TOL[quant] <= 1e-4:
                assert cached == verify.greedy(sessions[quant], cfg, p, N_NEW, run_options=ro, cache=False), (
                    quant,
                    task,
                )
            ids = np.array([p + cached])
            rerun, _ = verify.step(sessions[quant], ids, np.ones(ids.shape), verify.empty_past(cfg), run_options=ro)
            logits, past = verify.step(
                sessions[quant], ids[:, : len(p)], np.ones((1, len(p))), verify.empty_past(cfg), run_options=ro
            )
            for k, tok in enumerate(cached):
                ref = rerun[0, len(p) - 1 + k]
                assert np.abs(logits[0, -1] - ref).max() <= CACHE_TOL[quant], (quant, task, k)
                top2 = np.sort(ref)[-2:]
                assert int(logits[0, -1].argmax()) == tok and (
                    tok == int(ref.argmax()) or top2[1] - top2[0] <= 2 * CACHE_TOL[quant]
                )
                logits, past = verify.step(sessions[quant], [[tok]], np.ones((1, len(p) + k + 1)), past, run_options=ro)
