"""Llama-family export on the tiny random Llama (GQA 4/2 heads): graph vs PyTorch (plain HF model and the VLM with
adapters) with left padding and cached decode steps, int8/int4 agreement and cache, bundle + runtime greedy ==
PyTorch greedy, two tasks differ, configs the graph cannot express refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edgevlm.core import bundle, names
from edgevlm.core.config import TaskConfig
from edgevlm.core.errors import BackboneError
from edgevlm.export import verify
from edgevlm.export.graph import build_graph, check_config, op_counts
from edgevlm.export.quantize import check_adapter_inputs, quantize

TOL = 1e-4
TASKS = {
    "alpha": TaskConfig("alpha", 8, ["<src>", "<out>"], "<src> {input} <out>", max_new_tokens=12),
    "beta": TaskConfig("beta", 16, ["<q>", "<a>", "<ctx>"], "<ctx> <q> {input} <a>", max_new_tokens=12),
}
N_NEW = 12


@pytest.fixture(scope="module")
def bb(tiny_llama_dir):
    from edgevlm.train.backbone import load_backbone

    return load_backbone(tiny_llama_dir)


@pytest.fixture(scope="module")
def vlm(bb):
    """The PyTorch VLM with two tasks whose every adapter weight is random and non-zero (not the identity)."""
    from edgevlm.train.model import VLM

    model = VLM(bb.model).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for cfg in TASKS.values():
            for name, p in model.add_task(cfg).tensors().items():
                base = 1.0 if name.endswith("ln.weight") else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory, bb, vlm) -> list:
    """The VLM's two tasks saved as adapter directories (as training writes them)."""
    from edgevlm.core.config import AdapterMeta
    from edgevlm.train.adapters import save_adapter

    root = tmp_path_factory.mktemp("llama-adapters")
    out = []
    for name, cfg in TASKS.items():
        tensors = {k: v.detach().numpy() for k, v in vlm.task(name).tensors().items()}
        n, share = vlm.trainable_share(name)
        out.append(save_adapter(root / name, tensors, AdapterMeta(cfg, bb.fingerprint, bb.config_dict, n, share)))
    return out


@pytest.fixture(scope="module")
def llama_bundle(tmp_path_factory, tiny_llama_dir, adapter_dirs):
    """Factory: ``llama_bundle(quant)`` -> a tiny Llama bundle with both tasks (exported once per mode)."""
    from edgevlm.export import export_bundle

    made: dict = {}
    root = tmp_path_factory.mktemp("llama-bundles")

    def make(quant: str = "fp32"):
        if quant not in made:
            made[quant] = export_bundle(str(tiny_llama_dir), adapter_dirs, quant, out=root / quant, progress=False)
        return made[quant]

    return make


def _sizes(model):
    c = model.config
    return c.num_hidden_layers, c.num_key_value_heads, c.hidden_size // c.num_attention_heads


def _feeds(ids, mask, past, adapter=None) -> dict:
    f = {names.INPUT_IDS: np.asarray(ids, np.int64), names.ATTENTION_MASK: np.asarray(mask, np.int64)}
    f.update(zip(names.past_names(len(past) // 2), past))
    f.update(adapter or {})
    return f


def _empty(model, batch: int) -> list[np.ndarray]:
    n_layer, n_kv, hd = _sizes(model)
    return [np.zeros((batch, n_kv, 0, hd), np.float32) for _ in range(2 * n_layer)]


def _hf_ref(hf):
    """HF LlamaForCausalLM as (ids, mask, past) -> (logits, past), positions from the mask like the graph."""

    def run(ids, mask, past):
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
        out = hf(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
        return out.logits, out.past_key_values

    return run


def _vlm_ref(vlm, task):
    return lambda ids, mask, past: vlm(ids, attention_mask=mask, task=task, past_key_values=past)


def _prompts(vocab: int, task: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Two left-padded prompts (lengths 9 and 5), task tokens at the template's places when ``task``."""
    rng = np.random.default_rng(3)
    rows = [list(rng.integers(10, vocab, n)) for n in (9, 5)]
    if task:
        k = len(TASKS[task].special_tokens)
        rows = [[vocab + j for j in range(k - 1)] + r + [vocab + k - 1] for r in rows]
    width = max(map(len, rows))
    ids, mask = np.zeros((2, width), np.int64), np.zeros((2, width), np.int64)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    return ids, mask


def _max_diff(sess, ref, ids, mask, past0, adapter=None, n_decode: int = 3) -> float:
    """Max |logit diff| graph vs ``ref`` over the real (unpadded) prefill positions and ``n_decode`` cached steps."""
    worst, keep = 0.0, mask.astype(bool)
    with torch.no_grad():
        want, cache = ref(torch.tensor(ids), torch.tensor(mask), None)
        got, *past = sess.run(None, _feeds(ids, mask, past0, adapter))
        worst = float(np.abs(got - want.numpy())[keep].max())
        for _ in range(n_decode):
            nxt = want[:, -1].argmax(-1, keepdim=True).numpy()  # [b, 1]
            mask = np.concatenate([mask, np.ones((len(ids), 1), np.int64)], 1)
            want, cache = ref(torch.tensor(nxt), torch.tensor(mask), cache)
            got, *past = sess.run(None, _feeds(nxt, mask, past, adapter))
            worst = max(worst, float(np.abs(got - want.numpy()).max()))
    return worst


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager").eval()


@pytest.mark.parametrize("fused", [False, True])
def test_plain_graph_matches_hf_llama_with_left_padding_and_cache(hf, fused):
    model = build_graph(hf, fused_attention=fused)
    ops = op_counts(model)
    assert ops.get("com.microsoft.GroupQueryAttention", 0) == (3 if fused else 0), ops
    sess = verify.session(model)
    ids, mask = _prompts(hf.config.vocab_size, None)
    diff = _max_diff(sess, _hf_ref(hf), ids, mask, _empty(hf, 2))
    print(f"fused={fused}: max |logit diff| vs HF {diff:.2e}")
    assert diff <= TOL


def test_past_and_present_have_the_kv_heads(hf):
    model = build_graph(hf)
    n_layer, n_kv, hd = _sizes(hf)
    assert n_kv == 2 and hd == 16
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    outs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.output}
    assert dims[names.past_key(n_layer - 1)] == [names.BATCH_DIM, n_kv, names.PAST_DIM, hd]
    assert outs[names.present_value(0)] == [names.BATCH_DIM, n_kv, names.TOTAL_DIM, hd]
    sess = verify.session(model)
    ids, mask = _prompts(hf.config.vocab_size, None)
    _, *present = sess.run(None, _feeds(ids, mask, _empty(hf, 2)))
    assert all(p.shape == (2, n_kv, ids.shape[1], hd) for p in present)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("task", list(TASKS))
def test_adapter_graph_matches_vlm(vlm, task, fused):
    sess = verify.session(build_graph(vlm.backbone, fused_attention=fused))
    ids, mask = _prompts(vlm.vocab_size, task)
    adapter = {k: v.detach().numpy() for k, v in vlm.task(task).tensors().items()}
    diff = _max_diff(sess, _vlm_ref(vlm, task), ids, mask, _empty(vlm.backbone, 2), adapter)
    print(f"task={task} fused={fused}: max |logit diff| vs VLM {diff:.2e}")
    assert diff <= TOL


def test_identity_defaults_are_the_plain_backbone(vlm):
    sess = verify.session(build_graph(vlm.backbone))
    ids, mask = _prompts(vlm.vocab_size, None)
    assert _max_diff(sess, _vlm_ref(vlm, None), ids, mask, _empty(vlm.backbone, 2)) <= TOL


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantized_graph_converts_every_weight_matmul(hf, quant):
    n_layer = hf.config.num_hidden_layers
    q = quantize(build_graph(hf), quant)
    check_adapter_inputs(q, quant)  # raises if an adapter input or its default was lost
    ops = op_counts(q)
    assert ops["com.microsoft.MatMulNBits"] == 4 * n_layer + 1  # qkv o gate_up down per layer + the tied LM head
    assert ops["com.microsoft.GatherBlockQuantized"] == 1  # the tied token table, on the LM head's blocks
    weights = {t.name for t in q.graph.initializer} - set(names.adapter_names(n_layer))
    assert not [n.name for n in q.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    floats = {t.name: t.data_type for t in q.graph.initializer}
    assert floats["rotary.cos"] == floats["rotary.sin"] == onnx.TensorProto.FLOAT


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope_scaling"),
        ({"model_type": "mistral", "sliding_window": 16}, "sliding_window"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"model_type": "gemma"}, "model_type"),
    ],
)
def test_configs_the_graph_cannot_express_are_refused(hf, overrides, field):
    from transformers import AutoConfig

    d = {**hf.config.to_dict(), **overrides}
    cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    with pytest.raises(BackboneError) as e:
        check_config(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "config.json" in msg and field in msg, msg


# -- bundles (the writer: dispatch, fp32 self-check, quantization) and the runtime ----------------------------------

# Teacher-forced top-1 agreement with fp32 on the *random* tiny Llama, whose logit gaps are small and random
# (no trained margins): measured int8 0.99 and int4 0.87 here (int4: 4-bit down to the LM head, integer zero
# points; the earlier Q4_1-style float-minimum recipe measured 0.90); the real model's figures: experiments/.
# Wherever fp32's top-2 gap exceeds MARGIN (28 of the 144 positions here) the quantized token must be the same.
AGREEMENT = {"int8": 0.95, "int4": 0.84}
MARGIN = {"int8": 0.5, "int4": 0.5}
CACHE_TOL = {"fp32": 1e-4, "int8": 0.1, "int4": 0.1}  # per-token int8 activations jitter a little (as for GPT-2)


def _session_and_sizes(root):
    m = bundle.load_manifest(root, verify=False)
    return verify.session(str(root / bundle.BACKBONE_FILE)), m


def _run_options(root, m, task):
    from export_helpers import lora

    return lora(root / m.tasks[task].adapter_file) if task else None


def _bundle_greedy(sess, m, prompt: list[int], n: int, ro, cache: bool = True) -> tuple[list[int], list[np.ndarray]]:
    """Greedy tokens and each step's last-position logits, cached or re-running the whole sequence every step."""
    b = m.backbone
    empty = [np.zeros((1, b.n_kv_head, 0, b.head_dim), np.float32) for _ in range(2 * b.n_layer)]
    ids, toks, steps = list(prompt), [], []
    logits, *past = sess.run(None, _feeds([ids], np.ones((1, len(ids))), empty), ro)
    for _ in range(n):
        steps.append(logits[0, -1])
        toks.append(int(logits[0, -1].argmax()))
        ids.append(toks[-1])
        if cache:
            logits, *past = sess.run(None, _feeds([[toks[-1]]], np.ones((1, len(ids))), past), ro)
        else:
            logits, *_ = sess.run(None, _feeds([ids], np.ones((1, len(ids))), empty), ro)
    return toks, steps


def _gaps(sess, m, full: np.ndarray, ro) -> np.ndarray:
    """fp32 top-1 minus top-2 logit at every position of ``full`` [1, T]. -> [T]"""
    logits, *_ = sess.run(None, _feeds(full, np.ones(full.shape), verify.empty_past(m.backbone)), ro)
    top2 = np.sort(logits[0], -1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _task_prompts(bb, task, n: int = 4) -> list[list[int]]:
    from edgevlm.core.prompts import encode_prompt

    texts = ["the cat sat on the mat", "a small red house", "green fields and rivers", "one two three four"][:n]
    cfg = TASKS[task] if task else None
    v = bb.sizes.vocab_size
    return [encode_prompt(bb.tokenizer, cfg and cfg.template, t, cfg.special_tokens if cfg else (), v) for t in texts]


def test_bundle_records_architecture_and_kv_heads(llama_bundle):
    m = bundle.load_manifest(llama_bundle("fp32"))
    b = m.backbone
    assert (b.architecture, b.n_layer, b.n_head, b.n_kv_head, b.head_dim) == ("llama", 3, 4, 2, 16)
    assert max(m.export_log["fp32_max_abs_logit_diff"].values()) <= TOL  # the writer's self-check ran, all tasks
    assert set(m.export_log["fp32_max_abs_logit_diff"]) == {"<none>", *TASKS}
    assert m.export_log["op_counts"]["fused"]["com.microsoft.GroupQueryAttention"] == b.n_layer


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantized_bundle_agrees_with_fp32(llama_bundle, bb, quant):
    ref_root, q_root = llama_bundle("fp32"), llama_bundle(quant)
    (ref, m), (sess, mq) = _session_and_sizes(ref_root), _session_and_sizes(q_root)
    assert mq.export_log["op_counts"]["final"]["com.microsoft.MatMulNBits"] == 4 * m.backbone.n_layer + 1
    agree = total = n_wide = 0
    for task in [None, *TASKS]:
        for p in _task_prompts(bb, task):
            want, _ = _bundle_greedy(ref, m, p, N_NEW, _run_options(ref_root, m, task))
            full = np.array([p + want])
            logits, *_ = sess.run(
                None, _feeds(full, np.ones(full.shape), verify.empty_past(m.backbone)), _run_options(q_root, mq, task)
            )
            got = logits[0, len(p) - 1 : -1].argmax(-1)
            agree += int((got == np.array(want)).sum())
            total += len(want)
            gaps = _gaps(ref, m, full, _run_options(ref_root, m, task))[len(p) - 1 : -1]  # [n_new]
            assert (got == np.array(want))[gaps > MARGIN[quant]].all(), (quant, task)  # clear decisions never flip
            n_wide += int((gaps > MARGIN[quant]).sum())
    print(f"{quant}: teacher-forced top-1 agreement with fp32 {agree / total:.3f}, {n_wide}/{total} clear")
    assert agree / total >= AGREEMENT[quant] and n_wide >= 10  # the margin check covers some positions


@pytest.mark.parametrize("quant", bundle.QUANT_MODES)
def test_bundle_cached_decoding_equals_full_rerun(llama_bundle, bb, quant):
    root = llama_bundle(quant)
    sess, m = _session_and_sizes(root)
    for task in [None, *TASKS]:
        p = _task_prompts(bb, task, 1)[0]
        ro = _run_options(root, m, task)
        cached, c_logits = _bundle_greedy(sess, m, p, N_NEW, ro)
        rerun, r_logits = _bundle_greedy(sess, m, p, N_NEW, ro, cache=False)
        if quant == "fp32":
            assert cached == rerun, task
        for k, (a, b) in enumerate(zip(c_logits, r_logits)):
            if cached[:k] != rerun[:k]:
                break  # a near-tie flipped earlier: the sequences differ from here on
            assert np.abs(a - b).max() <= CACHE_TOL[quant], (quant, task, k)


def _torch_greedy(vlm, prompt: list[int], task, n: int, eos: int) -> list[int]:
    """Reference greedy decoding by re-running the VLM on the whole sequence (EOS excluded, stops there)."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits, _ = vlm(torch.tensor([ids]), task=task)
            nxt = int(logits[0, -1].argmax())
            if nxt == eos:
                break
            out.append(nxt)
            ids.append(nxt)
    return out


def test_runtime_greedy_equals_pytorch_greedy(llama_bundle, vlm, bb):
    from edgevlm.runtime import Runtime

    rt = Runtime.load(llama_bundle("fp32"), threads=1)
    for task in [None, *TASKS]:
        for p in _task_prompts(bb, task, 2):
            got = rt.generate_tokens(p, task=task, max_new_tokens=N_NEW)
            assert got == _torch_greedy(vlm, p, task, N_NEW, bb.eos_token_id), task


def test_runtime_left_padded_batch_equals_one_by_one(llama_bundle):
    from edgevlm.runtime import Runtime

    rt = Runtime.load(llama_bundle("fp32"), threads=1)
    texts = ["a small red house with a garden", "cat"]
    for task in [None, *TASKS]:
        assert rt.generate(texts, task=task, max_new_tokens=8) == [
            rt.generate(t, task=task, max_new_tokens=8) for t in texts
        ]


def test_two_tasks_differ_and_each_matches_its_vlm(llama_bundle, vlm, bb):
    root = llama_bundle("fp32")
    sess, m = _session_and_sizes(root)
    p = _task_prompts(bb, None, 1)[0]
    ids = np.array([p])
    out = {}
    for task in TASKS:
        out[task], *_ = sess.run(None, _feeds(ids, np.ones(ids.shape), verify.empty_past(m.backbone)),
                                 _run_options(root, m, task))  # fmt: skip
        with torch.no_grad():
            want, _ = vlm(torch.tensor(ids), task=task)
        assert np.abs(out[task] - want.numpy()).max() <= TOL
    assert np.abs(out["alpha"] - out["beta"]).max() > 0.1


# -- the chat template for task=None ----------------------------------------------------------------------------

CHAT_JINJA = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|endoftext|>system: be brief\n{% endif %}"
    "<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)
CHAT_PLAIN = "<|endoftext|>system: be brief\n<|endoftext|>user: {input}\nassistant:"


def test_chat_template_renders_one_user_turn():
    from edgevlm.core.errors import ExportError
    from edgevlm.export.chat import plain_chat_template

    assert plain_chat_template(CHAT_JINJA) == CHAT_PLAIN
    assert plain_chat_template(None) is None
    with pytest.raises(ExportError, match="chat_template"):
        plain_chat_template("{% for m in messages %}{{ m['content'] }}{{ m['content'] }}{% endfor %}")
    with pytest.raises(ExportError, match="chat_template"):
        plain_chat_template("{{ raise_exception('no user turns') }}")


@pytest.fixture(scope="module")
def chat_bundle(tmp_path_factory, tiny_llama_dir):
    """A bundle of the tiny Llama whose tokenizer_config.json carries a Jinja chat template (no tasks)."""
    import json
    import shutil

    from edgevlm.export import export_bundle

    src = tmp_path_factory.mktemp("chat-llama") / "model"
    shutil.copytree(tiny_llama_dir, src)
    (src / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "chat_template": CHAT_JINJA}))
    return export_bundle(str(src), [], "fp32", out=src.parent / "bundle", progress=False)


def test_chat_prompt_through_the_bundle_equals_pytorch(chat_bundle, vlm, bb, llama_bundle):
    from edgevlm.core.errors import ConfigError
    from edgevlm.runtime import Runtime

    rt = Runtime.load(chat_bundle, threads=1)
    assert rt.manifest.tokenizer.chat_template == CHAT_PLAIN
    question = "what is a cat"
    prompt = bb.tokenizer.encode(CHAT_PLAIN.replace("{input}", question)).ids
    assert prompt[0] == bb.eos_token_id  # the markup's special token is one id, not its characters
    want = _torch_greedy(vlm, prompt, None, N_NEW, bb.eos_token_id)
    assert rt.generate_tokens(prompt, max_new_tokens=N_NEW) == want
    chat = rt.generate(question, chat=True, max_new_tokens=N_NEW)  # the same ids as the rendered turn's text
    assert chat == rt.generate(CHAT_PLAIN.replace("{input}", question), max_new_tokens=N_NEW)
    assert chat != rt.generate(question, max_new_tokens=N_NEW)
    with pytest.raises(ConfigError, match="tokenizer.chat_template"):
        Runtime.load(llama_bundle("fp32"), threads=1).generate(question, chat=True)
    with pytest.raises(ConfigError, match="task=None"):
        Runtime.load(llama_bundle("fp32"), threads=1).generate(question, task="alpha", chat=True)
