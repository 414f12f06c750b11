"""Faster CPU training: length-grouped batches that stay uniform, frozen weights held in bf16 once, and bf16
autocast training that follows fp32's loss curve."""

from __future__ import annotations

import json
from collections import Counter

import torch

from edgevlm.train.api import TrainSpec, train
from edgevlm.train.backbone import load_backbone
from edgevlm.train.model import VLM
from edgevlm.train.tasks import BUILTIN_TASKS
from edgevlm.train.trainer import BUCKET_STEPS, step_indices


def test_batches_group_lengths_and_every_example_stays_equally_likely():
    lengths = [10 + (7 * i) % 90 for i in range(200)]  # 10..99, scattered
    size, pools = 8, 400
    drawn = [step_indices(lengths, size, 0, "nlg", k) for k in range(pools * BUCKET_STEPS)]
    assert all(len(b) == size for b in drawn)
    assert drawn[:BUCKET_STEPS] == [step_indices(lengths, size, 0, "nlg", k) for k in range(BUCKET_STEPS)]
    assert drawn[0] != step_indices(lengths, size, 1, "nlg", 0) != step_indices(lengths, size, 0, "mt", 0)
    counts = Counter(i for b in drawn for i in b)
    expected = pools * BUCKET_STEPS * size / len(lengths)  # 128 draws each
    assert len(counts) == len(lengths) and max(abs(c - expected) for c in counts.values()) < 5 * expected**0.5
    # a batch pads to its longest row: grouped batches pad far less than independent uniform draws would
    gen = torch.Generator().manual_seed(0)
    plain = [torch.randint(0, len(lengths), (size,), generator=gen).tolist() for _ in range(len(drawn))]
    padded = [sum(max(lengths[i] for i in b) - lengths[i] for b in batches for i in b) for batches in (drawn, plain)]
    assert padded[0] < 0.3 * padded[1], padded


def test_frozen_matrices_are_held_in_bf16_inside_the_block_and_restored_exactly(tiny_dir):
    bb = load_backbone("tiny")
    vlm = VLM(bb.model)
    vlm.add_task(BUILTIN_TASKS["nlg"])
    before = {k: v.detach().clone() for k, v in vlm.state_dict().items()}
    trainable = next(iter(vlm.tasks.values())).adapters[0].down_weight
    trainable.requires_grad_(True)
    with vlm.frozen_in(torch.bfloat16):
        dtypes = {n: p.dtype for n, p in vlm.named_parameters()}
        assert all(
            dtypes[n] == torch.bfloat16 for n, p in vlm.named_parameters() if n.startswith("backbone.") and p.dim() >= 2
        )
        assert all(dtypes[n] == torch.float32 for n, p in vlm.named_parameters() if p.dim() < 2)  # norms, biases
        assert all(dtypes[n] == torch.float32 for n in dtypes if n.startswith("tasks."))  # trainable: fp32 master
    after = vlm.state_dict()
    assert all(after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]) for k in before)


def test_bf16_training_follows_the_fp32_loss_curve_and_says_which_ran(tmp_path, tiny_dir):
    curves = {}
    for precision in ("fp32", "bf16"):
        base = dict(batch_size=8, max_len=192, eval_every=20, save_every=1000, progress=False)
        out = tmp_path / precision
        res = train(TrainSpec(tasks=["nlg"], out=out, steps=80, precision=precision, **base))
        curves[precision] = res["nlg"].valid_loss
        meta = json.loads((out / "nlg" / "adapter.json").read_text())
        assert meta["training"]["precision"] == {"fp32": "fp32", "bf16": "bf16 autocast"}[precision]
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert len(fp32) == len(bf16) == 5 and fp32[-1] < 0.8 * fp32[0]
    assert max(abs(a - b) / a for a, b in zip(fp32, bf16)) < 0.05, curves  # stated tolerance: 5 % of the loss
