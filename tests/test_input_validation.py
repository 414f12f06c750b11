"""Bad input ends in one typed, one-line error: manifest fields typed exactly, every generation/train/eval
option in range, the CLI without tracebacks for bad bytes, closed pipes and bad stdin lines (issue 18,
classes "traceback" and "accepted, should be refused")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgevlm.core import bundle
from edgevlm.core.errors import BundleError, ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
CLI = [sys.executable, "-m", "edgevlm.apps.cli"]


@pytest.fixture(scope="module")
def manifest_json(tiny_bundle) -> dict:
    return json.loads((tiny_bundle("fp32") / bundle.MANIFEST).read_text())


def _set(path: str, value):
    def edit(m):
        *head, last = path.split(".")
        for k in head:
            m = m[k]
        m[last] = value

    return edit


BAD_FIELDS = [
    ("tasks", [1], r"tasks: expected an object, got \[1\]"),
    ("backbone.n_layer", "4", r"backbone\.n_layer: expected a positive integer, got '4'"),
    ("backbone.n_layer", None, r"backbone\.n_layer: expected a positive integer, got None"),
    ("backbone.n_layer", 4.7, r"backbone\.n_layer: expected a positive integer, got 4\.7"),
    ("backbone.n_layer", True, r"backbone\.n_layer: expected a positive integer, got True"),
    ("schema_version", 1.0, r"schema_version: expected schema version 1, got 1\.0"),
    ("schema_version", True, r"schema_version: expected schema version 1, got True"),
    ("schema_version", 2, r"schema_version 2 is not supported"),
    ("backbone.quantization", "int3", r"backbone\.quantization: expected one of"),
    ("backbone.fingerprint", 7, r"backbone\.fingerprint: expected a hex fingerprint, got 7"),
    ("tasks.nlg.trainable_share", float("nan"), r"tasks\.nlg\.trainable_share: expected a percentage"),
    (
        "tasks.nlg.generation.max_new_tokens",
        0,
        r"tasks\.nlg\.generation\.max_new_tokens: expected a positive integer, got 0",
    ),
    ("tasks.nlg.backbone_fingerprint", "xyz", r"tasks\.nlg\.backbone_fingerprint: expected a hex fingerprint"),
    ("sizes", {"backbone.onnx": -1}, r"sizes: expected an object of file -> byte count"),
    ("tokenizer.eos_token_id", 1024, r"tokenizer\.eos_token_id: expected a token id below 1024, got 1024"),
]


@pytest.mark.parametrize("path,value,message", BAD_FIELDS, ids=[f"{p}={v!r}" for p, v, _ in BAD_FIELDS])
def test_manifest_fields_are_typed_exactly(manifest_json, path, value, message):
    m = json.loads(json.dumps(manifest_json))
    _set(path, value)(m)
    with pytest.raises(BundleError, match=rf"^b/manifest\.json: {message}"):
        bundle.Manifest.from_json(m, "b/manifest.json")


def test_manifest_too_deep_or_too_large_is_one_line(tmp_path):
    (tmp_path / "manifest.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(BundleError, match=r"manifest\.json: invalid JSON \(nested too deeply\)$"):
        bundle.load_manifest(tmp_path)
    with open(tmp_path / "manifest.json", "wb") as f:
        f.truncate(64 << 20)  # sparse: refused by its size before it is read
    with pytest.raises(BundleError, match=r"manifest\.json: 67108864 bytes, more than a manifest"):
        bundle.load_manifest(tmp_path)


def test_oversized_listed_file_is_refused_before_hashing(tmp_path, tiny_bundle, monkeypatch):
    root = shutil.copytree(tiny_bundle("fp32"), tmp_path / "b")
    os.truncate(root / "tokenizer.json", 2 << 30)  # a sparse 2 GB file in place of the tokenizer
    hashed = []
    real = bundle.sha256_file
    monkeypatch.setattr(bundle, "sha256_file", lambda path, *a: hashed.append(Path(path).name) or real(path, *a))
    with pytest.raises(
        BundleError, match=r"tokenizer\.json: checksum mismatch \(file truncated or modified: 2147483648"
    ):
        bundle.load_manifest(root)
    assert "tokenizer.json" not in hashed  # refused by its size, never read


@pytest.fixture(scope="module")
def rt(tiny_bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(tiny_bundle("fp32"), threads=1)


BAD_OPTIONS = [
    ({"do_sample": "no"}, r"do_sample must be True or False, got 'no'"),
    ({"temperature": True}, r"temperature must be a positive number, got True"),
    ({"temperature": float("inf")}, r"temperature must be a positive number, got inf"),
    ({"top_p": True}, r"top_p must be in \(0, 1\], got True"),
    ({"num_beams": 4096}, r"num_beams must be at most 64"),
    ({"length_penalty": "x"}, r"length_penalty must be a number in \[-10, 10\], got 'x'"),
    ({"length_penalty": -1e30}, r"length_penalty must be a number in \[-10, 10\], got -1e\+30"),
    ({"stop": 5}, r"stop must be a list of non-empty strings, got 5"),
    ({"stop": ["\udcff"]}, r"stop strings must be valid UTF-8 text"),
    ({"max_new_tokens": 10_000}, r"max_new_tokens=10000 is beyond the context"),
    ({"seed": -1}, r"seed must be a non-negative integer or None, got -1"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS, ids=[str(o) for o, _ in BAD_OPTIONS])
def test_generation_options_are_checked(rt, options, message):
    with pytest.raises(ConfigError, match=message):
        rt.generate("name[Aromi]", "nlg", **options)


def test_bad_text_input_is_one_line(rt):
    with pytest.raises(ConfigError, match=r"input is not valid UTF-8 text"):
        rt.generate("name[\udcff]", "nlg")  # what Python makes of undecodable argv bytes
    assert rt.generate("name[Aromi]", "nlg", max_new_tokens=3, length_penalty=-10.0, num_beams=2)


def run_cli(*argv, stdin: bytes | None = None, shell: str | None = None) -> subprocess.CompletedProcess:
    if shell:
        return subprocess.run(shell, shell=True, env=ENV, capture_output=True, timeout=120, executable="/bin/bash")
    return subprocess.run([*CLI, *argv], input=stdin, env=ENV, capture_output=True, timeout=120)


def test_cli_non_utf8_argv_and_stdin(tiny_bundle):
    b = str(tiny_bundle("fp32"))
    r = run_cli("run", b, "--task", "nlg", os.fsdecode(b"name[\xff\xfe]"))
    assert (r.returncode, r.stdout) == (2, b"")
    assert r.stderr.decode().strip().endswith("input is not valid UTF-8 text (undecodable byte at character 5)")
    r = run_cli("run", b, "--task", "nlg", "--max-new-tokens", "4", "--quiet", stdin=b"\xff\xfe bad\n\nname[Aromi]\n")
    err = r.stderr.decode().strip().splitlines()
    assert err == ["edgevlm run: error: stdin line 1: not UTF-8 text (invalid start byte at byte 0)"]
    assert r.returncode == 2 and len(r.stdout.decode().splitlines()) == 1  # the good line is answered


def test_cli_survives_a_closed_pipe(tiny_bundle):
    b = tiny_bundle("fp32")
    cmd = f"yes 'name[Aromi]' | head -300 | {' '.join(CLI)} run {b} --task nlg --max-new-tokens 8 --quiet | head -c5"
    r = run_cli(shell=cmd)
    assert len(r.stdout) == 5 and b"Traceback" not in r.stderr and r.stderr == b""


def test_train_options_that_cannot_work_are_refused(tmp_path):
    from edgevlm.train.api import TrainSpec, train

    def spec(**kw):
        return TrainSpec(tasks=kw.pop("tasks", ["nlg"]), out=tmp_path / "o", steps=1, progress=False, **kw)

    with pytest.raises(ConfigError, match=r"--max-len must be at least 16 .*got 3"):
        spec(max_len=3)
    with pytest.raises(ConfigError, match=r"--lr must be a positive number, got 0"):
        spec(lr=0)
    with pytest.raises(ConfigError, match=r"--data takes one --task"):
        spec(tasks="all", data="x.csv")
    with pytest.raises(
        ConfigError, match=r"--bottleneck 20000 \(task 'nlg'\): at most max\(4 x n_embd, 512\) = 512 .*\(n_embd=128\)"
    ):
        train(spec(bottleneck=20000))
    with pytest.raises(ConfigError, match=r"--max-len 5000: beyond the backbone's context n_positions="):
        train(spec(max_len=5000))
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"max_new_tokens": -5}, r"--max-new-tokens must be a positive integer, got -5"),
        ({"num_beams": 0}, r"--num-beams must be an integer in \[1, 64\], got 0"),
        ({"num_beams": 4096}, r"--num-beams must be an integer in \[1, 64\], got 4096"),
        ({"limit": True}, r"--limit must be a positive integer, got True"),
    ],
)
def test_eval_options_are_checked(trained_adapters, kw, message):
    from edgevlm.train.evaluate import evaluate_adapter

    with pytest.raises(ConfigError, match=message):
        evaluate_adapter(trained_adapters["qa"], **kw)


def test_data_files_name_file_and_line(tmp_path):
    from edgevlm.train.tasks.loaders import load_examples

    (tmp_path / "bad.csv").write_bytes(b'mr,ref\n"name[\xff]",x\n')
    with pytest.raises(DataError, match=r"bad\.csv:2: not UTF-8 text"):
        load_examples(tmp_path / "bad.csv", "nlg", None)
    (tmp_path / "deep.jsonl").write_text('{"source": ' + "[" * 100_000 + "]" * 100_000 + ', "target": "x"}\n')
    with pytest.raises(DataError, match=r"deep\.jsonl:1: invalid JSON \(nested too deeply\)"):
        load_examples(tmp_path / "deep.jsonl", "mytask", None)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"deep\.json: invalid JSON \(nested too deeply\)"):
        load_examples(tmp_path / "deep.json", "qa", None)
