"""Decoding for the PyTorch VLM: batched greedy (left padding + KV cache) and beam search.

:meth:`edgevlm.train.model.VLM.generate` is the one-prompt greedy reference; these
are its batched and beam variants (tests compare them against it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from edgevlm.train.model import VLM

StepFn = Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]


@torch.no_grad()
def greedy_batch(
    vlm: VLM, prompts: list[list[int]], task: str | None, max_new_tokens: int, eos: int, batch_size: int = 32
) -> list[list[int]]:
    """Greedy continuations of many prompts (EOS excluded), batched by similar length."""
    vlm.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for c in range(0, len(order), batch_size):
        chunk = order[c : c + batch_size]
        for i, gen in zip(chunk, _greedy_chunk(vlm, [prompts[i] for i in chunk], task, max_new_tokens, eos)):
            out[i] = gen
    return out


def _greedy_chunk(vlm: VLM, prompts: list[list[int]], task, max_new_tokens: int, eos: int) -> list[list[int]]:
    b, t = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((b, t), eos, dtype=torch.long)  # [b, t], left padded
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, t - len(p) :] = torch.tensor(p)
        mask[i, t - len(p) :] = 1
    logits, past = vlm(ids, attention_mask=mask, task=task)  # [b, t, V]
    outs: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(b, dtype=torch.bool)
    for _ in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1)  # [b]
        done |= nxt == eos
        for i in (~done).nonzero().flatten().tolist():
            outs[i].append(int(nxt[i]))
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=torch.long)], 1)  # [b, t+1]
        logits, past = vlm(nxt[:, None], attention_mask=mask, task=task, past_key_values=past)
    return outs


def beam_search(step: StepFn, num_beams: int, max_new_tokens: int, eos: int, length_penalty: float = 1.0) -> list[int]:
    """Best continuation by beam search over ``step``; scores are log-probability sums / length**penalty.

    ``step(None, None)`` returns the prompt's next-token log-probs ``[1, V]``;
    ``step(parents, tokens)`` (both ``[n]``) extends beam ``parents[i]`` by
    ``tokens[i]`` and returns ``[n, V]``. A hypothesis ends at ``eos`` (not
    returned); search stops when ``num_beams`` have ended (or at the length limit).
    """
    if max_new_tokens <= 0:
        return []
    logp = step(None, None)  # [1, V]
    seqs, scores = [[]], torch.zeros(1)
    finished: list[tuple[float, list[int]]] = []
    for t in range(max_new_tokens):
        cand = (scores[:, None] + logp).flatten()  # [n*V]
        top = cand.topk(min(2 * num_beams, cand.numel()))
        alive, parents = [], []
        for rank, (s, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            b, tok = divmod(idx, logp.shape[-1])
            if tok == eos:
                if rank < num_beams:
                    finished.append((s / (t + 1) ** length_penalty, seqs[b]))
            elif len(alive) < num_beams:
                alive.append((s, seqs[b] + [tok]))
                parents.append(b)
        if len(finished) >= num_beams or t + 1 == max_new_tokens or not alive:
            break
        seqs, scores = [q for _, q in alive], torch.tensor([s for s, _ in alive])
        logp = step(torch.tensor(parents), torch.tensor([q[-1] for q in seqs]))
    if len(finished) < num_beams:
        finished += [(s / max(len(q), 1) ** length_penalty, q) for s, q in alive]
    return max(finished, key=lambda x: x[0])[1]


@torch.no_grad()
def vlm_beam_search(
    vlm: VLM,
    prompt: list[int],
    task: str | None,
    num_beams: int,
    max_new_tokens: int,
    eos: int,
    length_penalty: float = 1.0,
) -> list[int]:
    """Beam search with the VLM's KV cache (reordered to follow the surviving beams)."""
    vlm.eval()
    state: dict = {}

    def step(parents, tokens):
        if parents is None:
            logits, state["past"] = vlm(torch.tensor([prompt]), task=task)  # [1, t, V]
        else:
            state["past"].reorder_cache(parents)
            logits, state["past"] = vlm(tokens[:, None], task=task, past_key_values=state["past"])  # [n, 1, V]
        return F.log_softmax(logits[:, -1].float(), -1)  # [n, V]

    return beam_search(step, num_beams, max_new_tokens, eos, length_penalty)
