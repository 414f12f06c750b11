"""The start block of ``edgevlm run`` (issue 28 item 5): backbone, quantization, tasks with method and size, cache
mode, providers/threads and memory on stderr once the bundle is loaded; stdout stays the generated text, and
``--quiet`` prints nothing but the answer. (``edgevlm serve``'s block: tests/test_serve_lora.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgevlm.apps.cli import main

TEXT = "name[Aromi], food[Chinese], area[city centre]"
MEMORY = re.compile(r"graph\+weights (\d+\.\d) MB on disk .*process (?:peak )?RSS (\d+\.\d) MB after load")


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> Path:
    return Path(tiny_bundle("int8"))


@pytest.fixture(scope="module")
def rt(bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(bundle, threads=1)


def graph_mb(bundle: Path) -> float:
    """backbone.onnx and its external data, in MB (what the block must report), from the directory itself."""
    return sum(f.stat().st_size for f in bundle.glob("backbone.onnx*")) / 1e6


def test_run_prints_the_start_block_on_stderr_and_only_the_answer_on_stdout(bundle, rt, capsys):
    assert main(["run", str(bundle), "--task", "nlg", "--threads", "1", "--max-new-tokens", "12", TEXT]) == 0
    out, err = capsys.readouterr()
    assert out == rt.generate(TEXT, "nlg", max_new_tokens=12) + "\n"  # stdout: the answer, nothing else
    lines = err.splitlines()
    assert lines[0].startswith(f"edgevlm run: bundle: {bundle} (loaded in ") and len(lines) == 5, lines
    assert "quantization int8" in lines[1] and "kv cache shared" in lines[1] and "4 layers x 128" in lines[1]
    want = "  tasks: dialogue (adapter, bottleneck 100), nlg (adapter, bottleneck 10), qa (adapter, bottleneck 300)"
    assert lines[2] == want
    assert lines[3] == "  engine: CPUExecutionProvider, threads 1"
    disk, rss = map(float, MEMORY.search(lines[4]).groups())
    assert disk == pytest.approx(graph_mb(bundle), abs=0.051) and disk > 0.5  # the int8 graph, not a stray file
    assert rss > 20.0  # a Python process with ONNX Runtime loaded is tens of MB


def test_quiet_prints_only_the_answer(bundle, rt, capsys):
    assert main(["run", str(bundle), "--task", "qa", "--quiet", "--max-new-tokens", "8", "tom has a ball ."]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (rt.generate("tom has a ball .", "qa", max_new_tokens=8) + "\n", "")


def test_bad_options_stay_one_line_without_the_block(bundle, capsys):
    assert main(["run", str(bundle), "--task", "nlg", "--max-new-tokens", "9999", TEXT]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beyond the context" in err  # checked before the block is printed


def test_list_prints_no_block(bundle, capsys):
    assert main(["run", str(bundle), "--list"]) == 0
    assert capsys.readouterr().err == ""


def test_block_names_the_ort_graph_and_its_size(tmp_path, trained_adapters):
    from edgevlm.apps.startinfo import start_block
    from edgevlm.export import export_bundle
    from edgevlm.runtime import Runtime

    out = export_bundle("tiny", [trained_adapters["qa"]], "int8", out=tmp_path / "b", progress=False, ort_format=True)
    lines = start_block(Runtime.load(out, threads=1, graph="ort"), graph="ort")
    disk, size = float(MEMORY.search(lines[-1]).group(1)), (out / "backbone.ort").stat().st_size / 1e6
    assert "(backbone.ort)" in lines[-1] and disk == pytest.approx(size, abs=0.051)
    assert lines[2] == "  tasks: qa (adapter, bottleneck 300)" and "loaded)" in lines[0]  # no time given
