"""The Java core (android_demo/core) against the Python runtime: bundles exported here, mvn test there.

write_fixtures.py exports the tiny backbone and a tiny random Llama (GQA 4/2) with nlg + mt (fp32, int8, int4)
through the CLI and records what the Python runtime makes of them (greedy tokens and text per task and for the plain
backbone, teacher-forced logits, run --list lines, cache layout, whether logits_to_keep is fed (and a copy of the
fp32 bundle whose graph lacks that option), tokenizer golden vectors (also of SmolLM2's
tokenizer: Digits before ByteLevel), truncated prompts, refusal messages of broken bundles; conversations of
messages on a tiny nlg + dialogue bundle with SmolLM2's chat_turns record, through the server's request path:
prompt ids, greedy replies and refusal lines) as JSON; the JUnit suite must reproduce all of it. Surefire's
reports are then checked so that no parity class was skipped and every recorded case ran.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "android_demo" / "core"
PARITY_CLASSES = (
    "ParityTest",
    "TokenizerParityTest",
    "PromptParityTest",
    "BadBundleTest",
    "ConcurrencyTest",
    "CancelTest",
    "SharedCacheTest",
    "ChatTest",
    "SessionConfigTest",
)


def surefire_counts(reports: Path) -> dict[str, dict[str, int]]:
    """{class simple name: {tests, skipped, failures, errors}} from target/surefire-reports/TEST-*.xml."""
    out = {}
    for f in sorted(reports.glob("TEST-*.xml")):
        suite = ET.parse(f).getroot()
        name = suite.get("name", "").rsplit(".", 1)[-1]
        out[name] = {k: int(suite.get(k, "0")) for k in ("tests", "skipped", "failures", "errors")}
    return out


def smollm2_tokenizer() -> Path:
    """SmolLM2's tokenizer.json as load_backbone('smollm2-135m') reads it (converted from the GGUF once, cached)."""
    from edgevlm.train.backbone import resolve

    return resolve("smollm2-135m") / "tokenizer.json"


def test_java_core_matches_python_runtime(tmp_path, tiny_llama_dir):
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail(
            "mvn (Apache Maven) is not on PATH: the Java core's tests need Maven and a JDK 17 (apt install maven)"
        )
    fixtures = tmp_path / "fixtures"
    extra = ["--llama", str(tiny_llama_dir), "--tokenizer", str(smollm2_tokenizer())]
    subprocess.run(
        [sys.executable, str(CORE / "fixtures" / "write_fixtures.py"), "--out", str(fixtures), *extra],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    reports = CORE / "target" / "surefire-reports"
    shutil.rmtree(reports, ignore_errors=True)  # no stale counts from an earlier run
    env = {**os.environ, "EDGEVLM_FIXTURES": str(fixtures)}
    run = subprocess.run([mvn, "-q", "-B", "test"], cwd=CORE, env=env, capture_output=True, text=True)
    counts = surefire_counts(reports)
    summary = "\n".join(f"{k}: {v}" for k, v in counts.items())
    assert run.returncode == 0, (
        f"mvn test failed (exit {run.returncode}):\n{summary}\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    )
    for name in PARITY_CLASSES:
        c = counts.get(name)
        assert c is not None, f"surefire has no report for {name}:\n{summary}"
        assert c["tests"] > 0 and c["skipped"] == 0, f"{name} did not really run: {c}\n{summary}"
        assert c["failures"] == 0 and c["errors"] == 0, f"{name}: {c}"
    expected = json.loads((fixtures / "expected.json").read_text())
    bundles = expected["bundles"]
    want = ["fp32", "fp32-nokeep", "int4", "int8", "llama-fp32", "llama-int4", "llama-int8"]
    assert sorted(bundles) == want, sorted(bundles)
    assert bundles["llama-int8"]["cache"]["n_kv_head"] == 2, "the Llama bundle has grouped-query attention (4/2)"
    for k in bundles:  # ONNX Runtime's fused kernel (GPT-2 and Llama graphs), run by the Java core's pinned version
        ops = json.loads((Path(bundles[k]["dir"]) / "manifest.json").read_text())["export_log"]["op_counts"]["final"]
        assert "com.microsoft.GroupQueryAttention" in ops, f"{k}: {sorted(ops)}"
    # the Java side asserts its prompt logits are [1, 1, V] exactly where Python feeds logits_to_keep ([1, s, V]
    # on the copy without the option) and its tokens equal Python's on every bundle
    assert {k: b["keeps_logits"] for k, b in bundles.items()} == {k: k != "fp32-nokeep" for k in bundles}
    tokens = {k: [c["tokens"] for c in bundles[k]["cases"]] for k in ("fp32", "fp32-nokeep")}
    assert tokens["fp32"] == tokens["fp32-nokeep"], "the option changes no greedy token (Python side)"
    # greedy cases + teacher-forced logits + one describe/cache test per bundle
    n_cases = sum(len(b["cases"]) + len(b["forced"]) + 1 for b in bundles.values())
    n_cases += len(expected["chat"]["cases"]) + len(expected["chat"]["errors"])  # chat=True on a templated copy
    assert counts["ParityTest"]["tests"] == n_cases, f"every case of every bundle: {counts['ParityTest']}"
    # shared vs concat cache in Java: every case and teacher-forced run + adapter + capacity per shared bundle
    kv = {
        k: json.loads((Path(b["dir"]) / "manifest.json").read_text())["backbone"]["kv_cache"]
        for k, b in bundles.items()
    }
    assert set(kv.values()) == {"shared"}, kv
    n_shared = sum(len(b["cases"]) + len(b["forced"]) + 2 if b["keeps_logits"] else 1 for b in bundles.values())
    assert counts["SharedCacheTest"]["tests"] == n_shared, counts["SharedCacheTest"]
    shared = json.loads((CORE / "fixtures" / "bad_bundles.json").read_text())["cases"]  # run a second time there
    assert counts["BadBundleTest"]["tests"] == len(expected["errors"]) + len(shared), counts["BadBundleTest"]
    assert {c["name"] for c in shared} <= {e["name"] for e in expected["errors"] if e["error"]}
    turns = expected["chat_turns"]  # conversations: every case and refusal ran, 3 turns on base and on dialogue
    assert counts["ChatTest"]["tests"] == len(turns["cases"]) + len(turns["errors"]) >= 14, counts["ChatTest"]
    three = {(c["task"], len(c["messages"])) for c in turns["cases"] if Path(c["dir"]).name == "chat-turns"}
    assert {(None, 3), (None, 4), ("dialogue", 3), ("dialogue", 4)} <= three, three
    n_vectors = sum(len(t["cases"]) for t in [expected["tokenizer"], *expected["tokenizers_extra"]])
    assert len(expected["tokenizers_extra"]) == 1 and counts["TokenizerParityTest"]["tests"] == n_vectors


def test_java_names_match_python_names():
    """Names.java's string constants and adapter parts are edgevlm.core.names' (the graph contract, declared once)."""
    from edgevlm.core import names

    src = (CORE / "src" / "main" / "java" / "io" / "edgevlm" / "core" / "Names.java").read_text()
    consts = dict(re.findall(r'public static final String (\w+) = "([^"]*)";', src))
    assert "LOGITS_TO_KEEP" in consts and len(consts) >= 7, sorted(consts)
    assert {k: getattr(names, k, None) for k in consts} == consts
    parts = re.search(r"ADAPTER_PARTS = \{([^}]*)\}", src).group(1)
    assert tuple(re.findall(r'"([^"]*)"', parts)) == names.ADAPTER_PARTS
