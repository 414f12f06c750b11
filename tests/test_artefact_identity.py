"""Identity inside every artefact (issue 29 item 1): an adapter file names its backbone and task in a record the
runtime reads before ONNX Runtime sees the file, and every file ORT maps (the graph's external data, whatever
the graph names) must be a checksummed manifest entry. Checksums are rewritten in each case, as a hostile
edit would: only the new checks stand between the edit and a silent wrong answer."""

from __future__ import annotations

import shutil

import onnx
import pytest
from test_bundle_identity import copy_bundle, load, retag

from edgevlm.core import bundle, identity
from edgevlm.core.errors import BundleError

ADAPTER = "adapters/nlg.onnx_adapter"


def test_exported_adapter_names_its_backbone_and_task(tiny_bundle):
    root = tiny_bundle("fp32")
    m = bundle.load_manifest(root)
    for name, t in m.tasks.items():
        data = (root / t.adapter_file).read_bytes()
        end, rec = identity.split_adapter(data, t.adapter_file)
        assert rec == {"backbone_fingerprint": m.backbone.fingerprint, "task": name} and end < len(data)


def test_adapter_of_another_backbone_is_refused_at_load(tmp_path, tiny_bundle):
    bad = copy_bundle(tiny_bundle("fp32"), tmp_path / "b", lambda m, d: retag(d / ADAPTER, "ab" * 32, "nlg"))
    with pytest.raises(BundleError, match=r"nlg\.onnx_adapter: the adapter file was exported for backbone 'abab"):
        load(bad)


def test_adapter_of_another_task_swapped_in_is_refused(tmp_path, tiny_bundle):
    swap = lambda m, d: shutil.copy(d / "adapters/dialogue.onnx_adapter", d / ADAPTER)  # noqa: E731
    bad = copy_bundle(tiny_bundle("fp32"), tmp_path / "b", swap)
    with pytest.raises(BundleError, match=r"nlg\.onnx_adapter: the adapter file is task 'dialogue', not 'nlg'"):
        load(bad)


def test_adapter_without_identity_asks_for_a_re_export(tmp_path, tiny_bundle):
    def strip(m, d):
        data = (d / ADAPTER).read_bytes()
        (d / ADAPTER).write_bytes(data[: identity.split_adapter(data, ADAPTER)[0]])

    with pytest.raises(
        BundleError, match=r"nlg\.onnx_adapter: the adapter file carries no backbone identity .*re-export"
    ):
        load(copy_bundle(tiny_bundle("fp32"), tmp_path / "b", strip))


def test_cut_identity_record_is_one_line(tmp_path, tiny_bundle):
    def cut(m, d):
        data = (d / ADAPTER).read_bytes()
        (d / ADAPTER).write_bytes(data[:-12] + (1 << 20).to_bytes(4, "little") + identity.ADAPTER_MAGIC)

    with pytest.raises(BundleError, match=r"adapter identity record of 1048576 bytes does not fit"):
        load(copy_bundle(tiny_bundle("fp32"), tmp_path / "b", cut))


def test_graph_naming_an_unlisted_data_file_is_refused(tmp_path, tiny_bundle):
    """The issue's case: the graph's initializers point at a data file inside the bundle that the manifest does
    not list (a copy of the real one, free to be altered): ORT would map a file nobody checksummed."""

    def redirect(m, d):
        g = onnx.load(d / "backbone.onnx", load_external_data=False)
        data = next(e for t in g.graph.initializer for e in t.external_data if e.key == "location").value
        shutil.copy(d / data, d / "other.data")
        for t in g.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = "other.data"
        onnx.save(g, d / "backbone.onnx")

    bad = copy_bundle(tiny_bundle("fp32"), tmp_path / "b", redirect)
    with pytest.raises(BundleError, match=r"external data file 'other\.data' has no checksum in the manifest"):
        load(bad)
