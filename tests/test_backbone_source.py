"""Adapters say where they belong (issue 28): adapter.json and the manifest's task entry name the backbone beside
its fingerprint; ``export`` and ``eval`` default ``--backbone`` to it and refuse another in one line."""

from __future__ import annotations

import json
import shutil

import pytest

from edgevlm.apps.cli import main
from edgevlm.core.bundle import load_manifest
from edgevlm.core.config import ADAPTER_JSON, AdapterMeta
from edgevlm.core.errors import BackboneError, ConfigError


def test_training_and_export_record_the_backbone(trained_adapters, tiny_bundle):
    for d in (trained_adapters["multi"] / "nlg", trained_adapters["qa"]):
        assert json.loads((d / ADAPTER_JSON).read_text())["backbone_source"] == "tiny"
    m = load_manifest(tiny_bundle("fp32"))
    assert {e.backbone_source for e in m.tasks.values()} == {"tiny"}
    assert all(e.backbone_fingerprint == m.backbone.fingerprint for e in m.tasks.values())


@pytest.fixture(scope="module")
def llama_adapter(tmp_path_factory, tiny_llama_dir):
    """A random adapter of the tiny Llama whose adapter.json names it, as training writes it."""
    from mixed_helpers import random_adapter_dirs

    root = tmp_path_factory.mktemp("llama-adapter")
    d = random_adapter_dirs(tiny_llama_dir, root)[0]
    meta = json.loads((d / ADAPTER_JSON).read_text())
    (d / ADAPTER_JSON).write_text(json.dumps({**meta, "backbone_source": str(tiny_llama_dir)}))
    return d


def test_export_defaults_to_the_recorded_backbone_and_refuses_another(llama_adapter, tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", "--adapter", str(llama_adapter), "--out", str(out), "--no-check"]) == 0
    m = load_manifest(out)
    assert m.backbone.architecture == "llama" and m.tasks["nlg"].backbone_source == tiny_llama_dir.name
    capsys.readouterr()
    assert main(["export", "--adapter", str(llama_adapter), "--backbone", "tiny", "--out", str(tmp_path / "b2")]) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]  # beside the progress bar
    assert len(err) == 1 and err[0].startswith("edgevlm export: error: ") and "trained on another backbone" in err[0]
    assert f"pass --backbone {tiny_llama_dir} or leave --backbone out" in err[0]
    assert not (tmp_path / "b2").exists()


def test_adapters_of_two_backbones_are_one_line(llama_adapter, trained_adapters, tmp_path):
    from edgevlm.export import export_bundle

    other = tmp_path / "qa"
    shutil.copytree(trained_adapters["qa"], other)
    with pytest.raises(ConfigError, match=r"^--adapter: 'nlg' was trained on '.*' but 'qa' on 'tiny'; one bundle"):
        export_bundle(None, [llama_adapter, other], "fp32", out=tmp_path / "b", progress=False)


def test_eval_loads_the_recorded_backbone(llama_adapter, tiny_llama_dir):
    from edgevlm.train.evaluate import load_model

    _, bb, meta = load_model(llama_adapter)
    assert bb.path == tiny_llama_dir and meta.backbone_source == str(tiny_llama_dir)
    with pytest.raises(BackboneError, match="leave --backbone out"):
        load_model(llama_adapter, "tiny")


def test_older_adapters_without_a_record_default_to_tiny(trained_adapters, tmp_path):
    from edgevlm.train.evaluate import default_backbone

    d = tmp_path / "qa"
    shutil.copytree(trained_adapters["qa"], d)
    meta = json.loads((d / ADAPTER_JSON).read_text())
    del meta["backbone_source"]
    (d / ADAPTER_JSON).write_text(json.dumps(meta))
    assert default_backbone(d, AdapterMeta.load(d)) == "tiny"
    (d / ADAPTER_JSON).write_text(json.dumps({**meta, "backbone_source": "a\nb"}))
    with pytest.raises(ConfigError, match="backbone_source must be a backbone name or path"):
        AdapterMeta.load(d)
