"""The torch-free runtime on the tiny fp32 bundle: parity with PyTorch, task switching, caches, threads, batching."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgevlm.core.errors import BundleError, ConfigError, TaskError

TASKS = (None, "nlg", "dialogue", "qa")


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> Path:
    return Path(tiny_bundle("fp32"))


@pytest.fixture(scope="module")
def rt(bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(bundle, threads=2)


@pytest.fixture(scope="module")
def vlm(tiny_dir, trained_adapters):
    from export_helpers import reference_vlm

    return reference_vlm(tiny_dir, trained_adapters)


@pytest.fixture(scope="module")
def sources() -> dict:
    """task -> three validation inputs of its mini task (plain text for the backbone)."""
    from edgevlm.train.tasks.mini import mini_task

    out = {t: [e.source[:300] for e in mini_task(t, "valid", 3)] for t in TASKS if t}
    out[None] = [e.target for e in mini_task("nlg", "valid", 3)]
    return out


def torch_greedy(vlm, ids: list[int], task: str | None, n: int, eos: int | None) -> list[int]:
    from edgevlm.train.decoding import greedy

    return greedy(vlm, ids, task, n, eos)


def encode(rt, text: str, task: str | None) -> list[int]:
    from edgevlm.core.prompts import encode_prompt

    t = rt.task(task)
    return encode_prompt(
        rt.tokenizer, t.template if t else None, text, t.special_tokens if t else (), rt.graph.vocab_size
    )


@pytest.mark.parametrize("task", TASKS)
def test_greedy_parity_with_pytorch(rt, vlm, sources, task):
    """Runtime greedy == PyTorch VLM greedy, token for token, for every task of the bundle and the plain backbone."""
    eos = rt.task(task).eos_token_id if task else rt.eos_token_id
    for text in sources[task]:
        ids = encode(rt, text, task)
        want = torch_greedy(vlm, ids, task, 24, eos)
        assert rt.generate_tokens(ids, task, max_new_tokens=24) == want
        assert rt.generate(text, task, max_new_tokens=24) == rt.tokenizer.decode(want).lstrip()


def test_tasks_listed_with_their_sizes(rt, bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    assert sorted(rt.tasks) == sorted(m["tasks"]) == ["dialogue", "nlg", "qa"]
    assert {n: t.bottleneck for n, t in rt.tasks.items()} == {"nlg": 10, "dialogue": 100, "qa": 300}


def test_same_text_under_two_tasks_interleaved(rt, vlm, sources):
    """Two streams of different tasks advanced alternately each give their own task's output."""
    text = sources["nlg"][0]
    solo = {t: rt.generate(text, t, max_new_tokens=20) for t in ("nlg", "dialogue")}
    assert solo["nlg"] != solo["dialogue"]
    streams = {t: rt.stream(text, t, max_new_tokens=20) for t in ("nlg", "dialogue")}
    got = {t: [] for t in streams}
    while streams:
        for t in list(streams):
            piece = next(streams[t], None)
            if piece is None:
                del streams[t]
            else:
                got[t].append(piece)
    assert {t: "".join(p) for t, p in got.items()} == solo


def test_cache_belongs_to_one_task(rt, vlm):
    """Identical prompt ids under two tasks, alternating calls: each matches its own PyTorch output."""
    v = rt.graph.vocab_size
    for text in (" the eagle serves french food", " i like cats . do you have pets ?", " hi , how are you ?"):
        ids = [v] + rt.tokenizer.encode(text).ids + [v + 1]
        want = {t: torch_greedy(vlm, ids, t, 16, 0) for t in ("nlg", "dialogue")}
        if want["nlg"] != want["dialogue"]:
            break
    else:
        pytest.fail("nlg and dialogue agree on every candidate prompt: the test cannot tell their caches apart")
    for _ in range(2):
        for t in ("nlg", "dialogue", "nlg"):
            assert rt.generate_tokens(ids, t, max_new_tokens=16) == want[t]


def test_threads_match_single_thread(rt, sources):
    """4 threads x 20 requests over every task == the single-thread outputs."""
    reqs = [(sources[t][i % 3], t) for i in range(20) for t in TASKS]
    want = {r: rt.generate(r[0], r[1], max_new_tokens=12) for r in set(reqs)}
    got: dict = {}

    def worker(k: int) -> None:
        for i in range(20):
            text, task = reqs[(k * 20 + i) % len(reqs)]
            got[(k, i)] = ((text, task), rt.generate(text, task, max_new_tokens=12))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(got) == 80 and all(out == want[req] for req, out in got.values())


def test_batched_generate_equals_one_by_one(rt, sources):
    texts = sources["nlg"] + ["name[Aromi]"]  # different lengths: left padding
    assert rt.generate(texts, "nlg", max_new_tokens=16) == [rt.generate(t, "nlg", max_new_tokens=16) for t in texts]
    assert rt.generate([], "nlg") == []


def test_min_new_tokens_decodes_exact_count(rt, sources):
    ids = encode(rt, sources["nlg"][0], "nlg")
    free = rt.generate_tokens(ids, "nlg", max_new_tokens=200)
    assert len(free) < 200  # stops at EOS on its own
    forced = rt.generate_tokens(ids, "nlg", max_new_tokens=len(free) + 5, min_new_tokens=len(free) + 5)
    assert len(forced) == len(free) + 5 and forced[: len(free)] == free


def test_sampling_is_seeded_and_beams_score_at_least_greedy(rt, sources):
    from edgevlm.runtime.generation import log_softmax

    text = sources["dialogue"][0]
    a = rt.generate(text, "dialogue", do_sample=True, seed=3, top_p=0.9, temperature=1.5)
    assert a == rt.generate(text, "dialogue", do_sample=True, seed=3, top_p=0.9, temperature=1.5)
    draws = {rt.generate(text, "dialogue", do_sample=True, seed=s, temperature=2.0) for s in range(6)}
    assert len(draws) > 1

    def score(ids, out):  # total log-prob of ``out`` after ``ids`` (plus EOS), by re-running the graph
        g = rt.graph
        seq = ids + out + [0]
        logits = rt.session.run(
            ["logits"],
            {
                "input_ids": np.array([seq[:-1]]),
                "attention_mask": np.ones((1, len(seq) - 1), np.int64),
                **{n: np.zeros((1, g.n_head, 0, g.head_dim), np.float32) for n in rt.steps.past},
            },
            rt.steps.run_options(rt.task("dialogue")),
        )[0][0]
        return float(sum(log_softmax(logits[i : i + 1])[0, seq[i + 1]] for i in range(len(ids) - 1, len(seq) - 1)))

    ids = encode(rt, text, "dialogue")
    greedy = rt.generate_tokens(ids, "dialogue", max_new_tokens=20)
    beam = rt.generate_tokens(ids, "dialogue", max_new_tokens=20, num_beams=4, length_penalty=0.0)
    assert score(ids, beam) >= score(ids, greedy) - 1e-6


def test_stop_strings(rt, sources):
    full = rt.generate(sources["nlg"][0], "nlg")
    word = full.split()[3]
    cut = rt.generate(sources["nlg"][0], "nlg", stop=[word])
    assert cut == full[: full.index(word)] and "".join(rt.stream(sources["nlg"][0], "nlg", stop=[word])) == cut


# -- bad input ------------------------------------------------------------------------------------


def test_unknown_task_lists_available(rt):
    with pytest.raises(TaskError, match=r"unknown task 'mt'.*\['dialogue', 'nlg', 'qa'\]"):
        rt.generate("hello", "mt")


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_input(rt, text):
    with pytest.raises(ConfigError, match="input is empty"):
        rt.generate(text, "nlg")
    with pytest.raises(ConfigError, match="input is empty"):
        rt.stream(text, "nlg")


def test_too_long_input_is_cut_as_in_training(rt):
    """The runtime cuts text with the trainer's build_prompt (the context keeps its start), not truncate_left."""
    from edgevlm.core.prompts import build_prompt
    from edgevlm.runtime import InputTruncated

    text = "name[Aromi], food[Chinese] " + " ".join(f"word{i}" for i in range(400))
    ids = encode(rt, text, "nlg")
    assert len(ids) > 512
    with pytest.warns(InputTruncated, match=f"input has {len(ids)} tokens; kept 496"):
        out = rt.generate(text, "nlg", max_new_tokens=16)
    kept = build_prompt(rt.tokenizer, rt.task("nlg"), text, rt.graph.vocab_size, 512 - 16)
    v = rt.graph.vocab_size
    assert len(kept) == 496 and kept[0] == v and kept[-1] == v + 1  # <mr> ... <response> survive
    assert rt.tokenizer.decode(kept[1:8]).strip().startswith("name[Aromi]")  # the MR at the start is kept
    assert out == rt.tokenizer.decode(rt.generate_tokens(kept, "nlg", max_new_tokens=16)).lstrip()


def test_too_long_dialogue_keeps_persona_start_and_newest_turn(rt):
    from edgevlm.core.prompts import build_prompt
    from edgevlm.runtime import InputTruncated

    persona = "i like cats . i live in rome . " * 8
    history = " ".join(f"<user> question {i} ? <system> answer {i} ." for i in range(60))
    text = f"{persona}{history} <user> do you have pets ?"
    with pytest.warns(InputTruncated):
        out = rt.generate(text, "dialogue", max_new_tokens=12)
    kept = build_prompt(rt.tokenizer, rt.task("dialogue"), text, rt.graph.vocab_size, 512 - 12)
    words = rt.tokenizer.decode([i for i in kept if i < rt.graph.vocab_size])
    assert words.strip().startswith("i like cats") and words.rstrip().endswith("do you have pets ?")
    assert "question 59" in words and "question 0 " not in words  # newest history kept, oldest dropped
    assert out == rt.tokenizer.decode(rt.generate_tokens(kept, "dialogue", max_new_tokens=12)).lstrip()


def test_max_new_tokens_beyond_context(rt):
    with pytest.raises(ConfigError, match="max_new_tokens=600 is beyond the context.*n_positions=512"):
        rt.generate("name[Aromi]", "nlg", max_new_tokens=600)
    with pytest.raises(ConfigError, match="unknown generation option"):
        rt.generate("name[Aromi]", "nlg", beams=2)


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundle, dst)
    return dst


def rewrite_manifest(root: Path, edit) -> None:
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("victim", ["adapters/nlg.onnx_adapter", "backbone.onnx", "tokenizer.json"])
def test_tampered_or_truncated_file_is_named(bundle, tmp_path, victim):
    from edgevlm.runtime import Runtime

    root = copy_bundle(bundle, tmp_path)
    data = bytearray((root / victim).read_bytes())
    data[len(data) // 2] ^= 1
    (root / victim).write_bytes(data)
    with pytest.raises(BundleError, match=rf"{victim}: checksum mismatch"):
        Runtime.load(root)
    (root / victim).write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(BundleError, match=rf"{victim}: checksum mismatch"):
        Runtime.load(root)


def test_unknown_schema_version(bundle, tmp_path):
    from edgevlm.runtime import Runtime

    root = copy_bundle(bundle, tmp_path)
    rewrite_manifest(root, lambda m: m.update(schema_version=99))
    with pytest.raises(BundleError, match="schema_version 99 is not supported"):
        Runtime.load(root)


def test_path_outside_bundle_refused(bundle, tmp_path):
    from edgevlm.runtime import Runtime

    root = copy_bundle(bundle, tmp_path)
    rewrite_manifest(root, lambda m: m["tasks"]["nlg"].update(adapter_file="../nlg.onnx_adapter"))
    with pytest.raises(BundleError, match="outside the bundle"):
        Runtime.load(root)


def retag(path: Path, manifest: dict, task: str) -> None:
    """Give an adapter file the identity record of ``task`` on ``manifest``'s backbone (FlatBuffer unchanged)."""
    from edgevlm.core import identity

    data = path.read_bytes()
    end = identity.split_adapter(data, str(path))[0]
    path.write_bytes(data[:end] + identity.adapter_trailer(manifest["backbone"]["fingerprint"], task))


def test_adapter_that_does_not_fit_its_manifest_entry(bundle, tmp_path):
    """A valid adapter file of another task under nlg's name (identity record and checksum rewritten) is caught
    by its shapes."""
    from edgevlm.core.bundle import sha256_file
    from edgevlm.runtime import Runtime

    root = copy_bundle(bundle, tmp_path)
    shutil.copy(root / "adapters/qa.onnx_adapter", root / "adapters/nlg.onnx_adapter")
    retag(root / "adapters/nlg.onnx_adapter", json.loads((root / "manifest.json").read_text()), "nlg")
    rewrite_manifest(
        root,
        lambda m: (
            m["files"].update({"adapters/nlg.onnx_adapter": sha256_file(root / "adapters/nlg.onnx_adapter")}),
            m["sizes"].update({"adapters/nlg.onnx_adapter": (root / "adapters/nlg.onnx_adapter").stat().st_size}),
        ),
    )
    with pytest.raises(BundleError, match=r"tasks\.nlg\.bottleneck is 10 but nlg\.onnx_adapter has bottleneck 300"):
        Runtime.load(root)


# -- hot-adding tasks -----------------------------------------------------------------------------


def drop_task(bundle: Path, tmp_path: Path, name: str) -> Path:
    root = copy_bundle(bundle, tmp_path)
    (root / f"adapters/{name}.onnx_adapter").unlink()

    def edit(m):
        del m["tasks"][name], m["files"][f"adapters/{name}.onnx_adapter"]

    rewrite_manifest(root, edit)
    return root


def test_add_task_from_another_bundle_without_reloading(rt, bundle, tmp_path, sources):
    from edgevlm.runtime import Runtime

    small = Runtime.load(drop_task(bundle, tmp_path, "qa"))
    session = small.session
    assert "qa" not in small.tasks
    task = small.add_task(bundle / "adapters/qa.onnx_adapter")
    assert task.name == "qa" and task.bottleneck == 300 and small.session is session
    assert small.generate(sources["qa"][0], "qa") == rt.generate(sources["qa"][0], "qa")
    with pytest.raises(TaskError, match="already loaded"):
        small.add_task(bundle / "adapters/qa.onnx_adapter")


def test_add_task_with_sidecar_json(rt, bundle, tmp_path, sources):
    from edgevlm.runtime import Runtime

    small = Runtime.load(drop_task(bundle, tmp_path, "nlg"))
    entry = json.loads((bundle / "manifest.json").read_text())["tasks"]["nlg"]
    card = tmp_path / "e2e.onnx_adapter"
    shutil.copy(bundle / "adapters/nlg.onnx_adapter", card)
    retag(card, json.loads((bundle / "manifest.json").read_text()), "e2e")  # the file says which task it is
    card.with_suffix(".json").write_text(json.dumps({"name": "e2e", **entry}))
    small.add_task(card)
    assert small.generate(sources["nlg"][1], "e2e") == rt.generate(sources["nlg"][1], "nlg")
    bare = tmp_path / "bare.onnx_adapter"
    shutil.copy(card, bare)
    with pytest.raises(BundleError, match="no task description"):
        small.add_task(bare)


# -- light ----------------------------------------------------------------------------------------


def test_runtime_is_torch_free(bundle):
    """Loading and running a bundle imports none of the training/export stack (import time is a benchmark)."""
    code = f"""
import sys
import edgevlm.runtime
rt = edgevlm.runtime.Runtime.load({str(bundle)!r})
rt.generate("name[Aromi]", "nlg", max_new_tokens=4)
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {{'torch', 'transformers', 'optimum', 'onnx'}})
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
