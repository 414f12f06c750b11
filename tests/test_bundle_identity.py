"""No silent wrong answer from a foreign part: the backbone's fingerprint over all weights ties adapters,
manifest and graph together; sizes, quantization and tokenizer are cross-checked at load; NaN/Inf/absurd
weights are refused with the tensor's name (issue 18, class "silent wrong output")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevlm.core import bundle, identity
from edgevlm.core.errors import BackboneError, BundleError, ConfigError, ExportError


def copy_bundle(src: Path, dst: Path, edit=None) -> Path:
    """A copy of the bundle ``src`` with ``edit(manifest_dict, root)`` applied and checksums/sizes rewritten."""
    shutil.copytree(src, dst)
    m = json.loads((dst / bundle.MANIFEST).read_text())
    if edit:
        edit(m, dst)
    for rel in m["files"]:
        m["files"][rel] = bundle.sha256_file(dst / rel)
        m["sizes"][rel] = (dst / rel).stat().st_size
    (dst / bundle.MANIFEST).write_text(json.dumps(m))
    return dst


def other_backbone(tiny_dir: Path, dst: Path, name: str = "transformer.h.3.mlp.c_fc.weight", value=None) -> Path:
    """The tiny backbone with one block-3 weight changed (same layout, other weights)."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(tiny_dir, dst)
    t = load_file(str(dst / "model.safetensors"))
    t[name] = t[name].copy()
    t[name].flat[0] = t[name].flat[0] + 0.5 if value is None else value
    save_file(t, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def load(root: Path):
    from edgevlm.runtime import Runtime

    return Runtime.load(root, threads=1)


def test_adapter_refused_on_a_backbone_whose_block_3_differs(tmp_path, tiny_dir, trained_adapters):
    from edgevlm.export import export_bundle

    other = other_backbone(tiny_dir, tmp_path / "other")
    with pytest.raises(BackboneError, match=r"adapter for task 'qa' was trained on another backbone"):
        export_bundle(str(other), [trained_adapters["qa"]], out=tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))


def test_graph_of_another_backbone_refused_even_with_rewritten_checksums(tmp_path, tiny_dir, tiny_bundle):
    from edgevlm.export import export_bundle

    foreign = export_bundle(str(other_backbone(tiny_dir, tmp_path / "o")), [], out=tmp_path / "ob", progress=False)
    swap = lambda m, d: shutil.copy(foreign / "backbone.onnx", d / "backbone.onnx")  # noqa: E731
    mixed = copy_bundle(tiny_bundle("fp32"), tmp_path / "mixed", swap)
    with pytest.raises(BundleError, match=r"backbone\.onnx: the graph was exported for backbone\.fingerprint="):
        load(mixed)


@pytest.mark.parametrize(
    "field,value", [("n_positions", 100000), ("quantization", "int8"), ("n_head", 8), ("fingerprint", "ab" * 16)]
)
def test_manifest_that_does_not_describe_its_graph_is_refused(tmp_path, tiny_bundle, field, value):
    root = copy_bundle(tiny_bundle("fp32"), tmp_path / "b", lambda m, d: m["backbone"].__setitem__(field, value))
    if field == "fingerprint":  # the task entries name the backbone too
        with pytest.raises(BundleError, match=r"tasks\.\w+\.backbone_fingerprint: not backbone\.fingerprint"):
            load(root)
        return
    with pytest.raises(BundleError, match=rf"the graph was exported for backbone\.{field}=.* but the manifest says"):
        load(root)


def test_graph_without_identity_asks_for_a_re_export(tmp_path, tiny_bundle):
    import onnx

    def strip(m, d):
        g = onnx.load(d / "backbone.onnx")
        del g.metadata_props[:]
        onnx.save_model(g, d / "backbone.onnx")

    with pytest.raises(BundleError, match=r"carries no backbone fingerprint .*re-export the bundle"):
        load(copy_bundle(tiny_bundle("fp32"), tmp_path / "b", strip))


def test_tokenizer_larger_than_the_graph_vocabulary_is_refused(tmp_path, tiny_bundle):
    from tokenizers import AddedToken, Tokenizer

    def grow(m, d):
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.add_tokens([AddedToken("<extra-token>", special=True)])
        tok.save(str(d / "tokenizer.json"))

    with pytest.raises(BundleError, match=r"tokenizer has 1025 tokens but the graph's vocabulary only 1024"):
        load(copy_bundle(tiny_bundle("fp32"), tmp_path / "b", grow))


def test_add_task_needs_the_backbone_fingerprint(tmp_path, tiny_bundle):
    rt = load(tiny_bundle("fp32"))
    entry = json.loads((tiny_bundle("fp32") / bundle.MANIFEST).read_text())["tasks"]["qa"]
    card = tmp_path / "qa2.onnx_adapter"
    shutil.copy(tiny_bundle("fp32") / "adapters/qa.onnx_adapter", card)
    with pytest.raises(BundleError, match=r"backbone_fingerprint 'ffff.*trained on another backbone"):
        rt.add_task(card, {**entry, "name": "qa2", "backbone_fingerprint": "f" * 32})
    no_fp = {k: v for k, v in entry.items() if k != "backbone_fingerprint"}
    card.with_suffix(".json").write_text(json.dumps({**no_fp, "name": "qa2"}))
    with pytest.raises(BundleError, match=r"qa2\.json: backbone_fingerprint: missing"):
        rt.add_task(card)
    with pytest.raises(BundleError, match=r"qa2\.onnx_adapter: the adapter file is task 'qa', not 'qa2'"):
        rt.add_task(card, {**entry, "name": "qa2"})  # the file itself says which task it is
    retag(card, rt.manifest.backbone.fingerprint, "qa2")
    assert rt.add_task(card, {**entry, "name": "qa2"}).name == "qa2"


def retag(path: Path, fingerprint: str, task: str) -> None:
    """Replace an adapter file's identity record (the FlatBuffer unchanged)."""
    data = path.read_bytes()
    end, _ = identity.split_adapter(data, str(path))
    path.write_bytes(data[:end] + identity.adapter_trailer(fingerprint, task))


def nan_adapter(src: Path, dst: Path, value: float) -> Path:
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst)
    w = dst / "adapter.safetensors"
    t = load_file(str(w))
    t["adapter.2.up.weight"] = t["adapter.2.up.weight"].copy()
    t["adapter.2.up.weight"][0, 3] = value
    meta = json.loads((dst / "adapter.json").read_text())
    save_file(t, str(w), metadata={"task": "qa", "backbone_fingerprint": meta["backbone_fingerprint"]})
    return dst


@pytest.mark.parametrize("value,what", [(np.nan, "NaN"), (np.inf, "infinity"), (3e7, "the absurd value 3e")])
def test_export_refuses_bad_adapter_values_naming_the_tensor(tmp_path, trained_adapters, value, what):
    from edgevlm.export import export_bundle

    bad = nan_adapter(trained_adapters["qa"], tmp_path / "qa", value)
    with pytest.raises(ConfigError, match=rf"adapter\.safetensors: tensor adapter\.2\.up\.weight holds {what}"):
        export_bundle("tiny", [bad], out=tmp_path / "b", progress=False)


def test_runtime_refuses_a_nan_adapter_file(tmp_path, tiny_bundle):
    from edgevlm.export.adapters import read_ort_adapter, write_ort_adapter

    def poison(m, d):
        t = read_ort_adapter(d / "adapters/nlg.onnx_adapter")
        t["task_embeddings"][1, 5] = np.nan
        write_ort_adapter(
            d / "adapters/nlg.onnx_adapter", t, identity.adapter_trailer(m["backbone"]["fingerprint"], "nlg")
        )

    with pytest.raises(BundleError, match=r"nlg\.onnx_adapter: tensor task_embeddings holds NaN \(1 of"):
        load(copy_bundle(tiny_bundle("fp32"), tmp_path / "b", poison))


def test_backbone_with_nan_weights_is_refused(tmp_path, tiny_dir):
    from edgevlm.train.backbone import load_backbone

    bad = other_backbone(tiny_dir, tmp_path / "nan", "transformer.h.1.attn.c_proj.weight", np.nan)
    with pytest.raises(BackboneError, match=r"weight transformer\.h\.1\.attn\.c_proj\.weight holds NaN"):
        load_backbone(bad)


def test_config_without_weights_is_one_line(tmp_path, tiny_dir):
    from edgevlm.train.backbone import load_backbone

    (tmp_path / "w").mkdir()
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(tiny_dir / f, tmp_path / "w" / f)
    with pytest.raises(BackboneError, match=r"/w: cannot load the weights"):
        load_backbone(tmp_path / "w")


def test_self_check_fails_on_nan(tmp_path, tiny_backbone, trained_adapters):
    """``max(worst, nan)`` used to keep the old value: a NaN difference passed as 0.0."""
    from edgevlm.export.adapters import load_task_adapters
    from edgevlm.export.graph import build_graph
    from edgevlm.export.writer import self_check, spill

    path = spill(build_graph(tiny_backbone.model), tmp_path / "g" / "backbone.onnx")
    (task,) = load_task_adapters([trained_adapters["qa"]])
    assert self_check(path, tiny_backbone, [task])["qa"] < 1e-3
    task.tensors["adapter.0.down.bias"] = np.full_like(task.tensors["adapter.0.down.bias"], np.nan)
    with pytest.raises(ExportError, match=r"disagrees with PyTorch: max \|logit diff\| nan"):
        self_check(path, tiny_backbone, [task])


def test_adapter_files_of_different_adapters_are_refused(tmp_path, trained_adapters):
    from safetensors.numpy import load_file, save_file

    from edgevlm.train.adapters import load_adapter

    d = shutil.copytree(trained_adapters["qa"], tmp_path / "qa")
    save_file(load_file(str(d / "adapter.safetensors")), str(d / "adapter.safetensors"), {"backbone_fingerprint": "0"})
    with pytest.raises(ConfigError, match=r"trained on backbone 0 but adapter\.json names"):
        load_adapter(d)


def test_check_values_passes_trained_sizes():
    identity.check_values({"a": np.ones((4, 4), np.float32) * 9e3}, "w", ConfigError)  # large but sane
    with pytest.raises(ConfigError, match=r"^w: tensor b holds infinity \(2 of 2 values\); refused$"):
        identity.check_values({"b": np.array([np.inf, -np.inf])}, "w", ConfigError)
