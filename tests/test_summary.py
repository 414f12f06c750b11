"""docs/results.md and README.md's headline table are generated from the committed result JSONs: regenerating
them gives the committed files, so no figure there can drift from its result file."""

from __future__ import annotations

import json
import shutil

import pytest

from edgevlm.benchmarks.common import RESULTS_DIR
from edgevlm.benchmarks.summary import DOCS, REPO, link_to, render, write
from edgevlm.benchmarks.summary_sections import END, START, splice_headline

README = REPO / "README.md"
REGENERATE = "run `python -m edgevlm.benchmarks.summary` (or `edgevlm bench --summary`) and commit the result"


def test_results_md_is_what_the_result_files_give():
    assert (DOCS / "results.md").read_text() == render(RESULTS_DIR, DOCS / "results.md"), REGENERATE


def test_readme_headline_is_what_the_result_files_give():
    text = README.read_text()
    assert START in text and END in text
    assert splice_headline(text, RESULTS_DIR, link_to(RESULTS_DIR, README)) == text, REGENERATE


def test_a_changed_result_changes_the_headline(tmp_path):
    """The comparison above can fail: one figure changed in a copy of the results shows up in the table."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS_DIR, results)
    path = results / "peers-smollm2" / "latency" / "results.json"
    doc = json.loads(path.read_text())
    row = next(r for r in doc["rows"] if r["engine"].startswith("edgevlm int8 task="))
    row["tokens_per_s"] = 12345.0
    path.write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\nold table\n{END}\n\nrest\n")
    out = write(results, tmp_path / "docs" / "results.md", readme)
    assert "int8 12345 / " in readme.read_text() and "old table" not in readme.read_text()
    assert readme.read_text().endswith(f"{END}\n\nrest\n")
    assert "int8 12345 / " in out.read_text() and "(../results/footprint/results.json)" in out.read_text()


def test_readme_without_markers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="headline markers"):
        splice_headline("# no markers\n", RESULTS_DIR, "benchmarks/results/")


def test_quality_gate_verdict_against_fp32_and_the_previous_exact_int4():
    from edgevlm.benchmarks.summary_quality import verdict

    got = {"bundle-fp32": {"bleu": 64.0}, "adapter-int4-bundle-int4": {"bleu": 63.6}, "exact-int4": {"bleu": 63.4}}
    assert (
        verdict(got, "bleu")
        == "int4-trained int4 63.60 vs fp32 64.00: -0.40 (met); vs previous exact int4 63.40: +0.20 (met)"
    )
    got["adapter-int4-bundle-int4"] = {"bleu": 63.3}
    assert "-0.70 (missed)" in verdict(got, "bleu") and "-0.10 (missed)" in verdict(got, "bleu")
    assert verdict({"bundle-fp32": {"f1": 1.0}}, "f1") == "not measured"
