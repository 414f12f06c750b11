"""The shared bad-bundle table (android_demo/core/fixtures/bad_bundles.json) on the Python runtime: every row is
refused with a message matching the table. The Java core runs the same rows (write_fixtures.py records this
runtime's messages; BadBundleTest demands them verbatim and checks every row of the table ran)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from edgevlm.core.errors import BundleError

FIXTURES = Path(__file__).resolve().parents[1] / "android_demo" / "core" / "fixtures"
sys.path.insert(0, str(FIXTURES))
import bad_cases  # noqa: E402

CASES = bad_cases.cases()


def test_table_rows_are_unique_and_use_known_edits():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))
    assert all(len(c["edit"]) == 1 and next(iter(c["edit"])) in bad_cases.EDITS for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_python_refuses_each_row(tmp_path, tiny_bundle, case):
    from edgevlm.runtime import Runtime

    bad = bad_cases.make(tiny_bundle("fp32"), tmp_path / case["name"], case)
    with pytest.raises(BundleError) as e:
        Runtime.load(bad, threads=1)
    assert re.search(case["match"], str(e.value)), str(e.value)
    assert "\n" not in str(e.value)
