"""The bundle contract in core: graph IO declared once (builder, runtime and exporter consume it) and the manifest
dataclasses (round trip, one-line errors naming the field, old manifests still load)."""

from __future__ import annotations

import dataclasses
import json

import onnx
import pytest

from edgevlm.core import graphio, names
from edgevlm.core.errors import BundleError
from edgevlm.core.manifest import BackboneRecord, GenerationDefaults, Manifest, TokenizerRecord
from edgevlm.export.graph import build_graph, declared_io, decoder_io


def test_io_spec_is_architecture_neutral():
    io = graphio.decoder_io(n_layer=2, n_kv_head=2, head_dim=16, n_embd=96, vocab_size=50)
    past = {s.name: s for s in io.past}
    assert list(past) == names.past_names(2)
    assert past[names.past_value(1)].dims == (names.BATCH_DIM, 2, names.PAST_DIM, 16)  # GQA: kv heads, own head_dim
    assert io.outputs[0].dims == (names.BATCH_DIM, names.KEPT_DIM, 50)  # the last logits_to_keep positions
    assert io.outputs[1].dims == (names.BATCH_DIM, 2, names.TOTAL_DIM, 16)
    ad = {s.name: s.dims for s in io.adapter_inputs}
    assert ad[names.adapter_name(0, "down.weight")] == (96, names.BOTTLENECK_DIM)
    assert ad[names.TASK_EMBEDDINGS] == (names.TASK_TOKENS_DIM, 96)
    assert past[names.past_key(0)].shape(batch=3, past_sequence=0) == (3, 2, 0, 16)


@pytest.mark.parametrize(
    "dtype, dims, ok",
    [
        ("float32", ["batch", 4, "past", 8], True),  # symbolic dims may carry any name
        ("float32", [None, 4, None, 8], True),  # unknown dims are dynamic
        ("float32", ["batch", 2, "past", 8], False),  # another kv-head count
        ("float32", [1, 4, "past", 8], False),  # batch fixed to 1
        ("float32", ["batch", 4, "past"], False),  # rank
        ("int64", ["batch", 4, "past", 8], False),  # dtype
    ],
)
def test_tensor_spec_mismatch(dtype, dims, ok):
    spec = graphio.TensorSpec("past_key_values.0.key", "float32", ("batch", 4, "past_sequence", 8))
    why = spec.mismatch(dtype, dims)
    assert (why is None) == ok
    if not ok:
        assert why == f"is declared {dtype}{dims}, expected float32['batch', 4, 'past_sequence', 8]"


@pytest.mark.parametrize("fused", [False, True])
def test_builder_declares_exactly_the_spec(tiny_backbone, fused):
    model = build_graph(tiny_backbone.model, fused_attention=fused)
    io = decoder_io(tiny_backbone.model.config)
    graphio.check_graph_io(io, *declared_io(model), "graph")  # raises on any difference
    assert [i.name for i in model.graph.input] == [s.name for s in io.inputs + io.adapter_inputs] + [
        graphio.ADAPTER_COLUMNS.name
    ] + [s.name for s in io.options]
    assert [o.name for o in model.graph.output] == [s.name for s in io.outputs]


def _with_past_dim(model: onnx.ModelProto, name: str, axis: int, value: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dim = next(i for i in m.graph.input if i.name == name).type.tensor_type.shape.dim[axis]
    dim.Clear()
    dim.dim_value = value
    return m


def test_graph_with_other_past_dim_is_refused_by_exporter_check(tiny_backbone):
    model = build_graph(tiny_backbone.model)
    c = tiny_backbone.model.config
    bad = _with_past_dim(model, names.past_value(1), 1, c.n_head + 1)
    with pytest.raises(BundleError) as e:
        graphio.check_graph_io(decoder_io(c), *declared_io(bad), "backbone.onnx")
    hd = c.n_embd // c.n_head
    assert str(e.value) == (
        f"backbone.onnx: graph input {names.past_value(1)} is declared float32['batch', {c.n_head + 1}, "
        f"'past_sequence', {hd}], expected float32['batch', {c.n_head}, 'past_sequence', {hd}]"
    )


def test_graph_with_other_past_dim_is_refused_by_runtime(tiny_backbone, tmp_path):
    from edgevlm.runtime.session import check_graph, open_session

    c = tiny_backbone.model.config
    path = tmp_path / "backbone.onnx"
    record = BackboneRecord("backbone.onnx", **tiny_backbone.config_dict, quantization="fp32")
    manifest = Manifest(record, TokenizerRecord("tokenizer.json"), {})
    onnx.save(build_graph(tiny_backbone.model), path)
    g = check_graph(open_session(path, 1), manifest, path)
    assert (g.n_kv_head, g.head_dim) == (c.n_head, c.n_embd // c.n_head)
    hd = c.n_embd // c.n_head
    gqa = dataclasses.replace(manifest, backbone=dataclasses.replace(record, n_kv_head=2))  # claims 2 kv heads
    with pytest.raises(BundleError) as e:
        check_graph(open_session(path, 1), gqa, path)
    assert str(e.value) == (
        f"{path}: graph input {names.past_key(0)} is declared float32['batch', {c.n_head}, 'past_sequence', {hd}], "
        f"expected float32['batch', 2, 'past_sequence', {hd}]"
    )
    onnx.save(_with_past_dim(build_graph(tiny_backbone.model), names.past_value(2), 0, 1), path)  # batch fixed to 1
    with pytest.raises(BundleError) as e:
        check_graph(open_session(path, 1), manifest, path)
    assert str(e.value).startswith(f"{path}: graph input {names.past_value(2)} is declared float32[1, {c.n_head}, ")


# -- the manifest -------------------------------------------------------------------------------------------------

WHERE = "b/manifest.json"


def old_manifest() -> dict:
    """A manifest as the exporter wrote it before the dataclasses (extra informational fields, no GQA fields)."""
    return {
        "schema_version": 1,
        "backbone": {
            "file": "backbone.onnx",
            "external_data": None,
            "n_layer": 2,
            "n_head": 4,
            "n_embd": 128,
            "vocab_size": 1024,
            "n_positions": 512,
            "quantization": "fp32",
            "layer_norm_epsilon": 1e-05,
            "activation_function": "gelu_new",
            "fingerprint": "455fbdd2686919fc9e026580ea4e6213",
            "opset": 17,
            "source": "tiny-v2",
        },
        "tokenizer": {"file": "tokenizer.json", "eos_token_id": 0},
        "io": graphio.decoder_io(2, 4, 32, 128, 1024).names(),
        "tasks": {
            "nlg": {
                "adapter_file": "adapters/nlg.onnx_adapter",
                "bottleneck": 10,
                "n_task_tokens": 2,
                "special_tokens": ["<mr>", "<response>"],
                "special_token_ids": [1024, 1025],
                "template": "<mr> {input} <response>",
                "eos_token_id": 0,
                "metric": "bleu",
                "generation": {
                    "max_new_tokens": 48,
                    "greedy": True,
                    "max_source_tokens": None,
                    "max_target_tokens": None,
                },
                "trainable_params": 12072,
                "trainable_share": 1.2194530643910009,
            }
        },
        "export_log": {"op_counts": {}},
        "files": {
            "adapters/nlg.onnx_adapter": "7" * 64,
            "backbone.onnx": "1" * 64,
            "tokenizer.json": "3" * 64,
        },
    }


def test_old_manifest_loads_with_gpt2_defaults():
    m = Manifest.from_json(old_manifest(), WHERE)
    b = m.backbone
    assert (b.architecture, b.n_kv_head, b.head_dim, b.quantization, b.source) == ("gpt2", 4, 32, "fp32", "tiny-v2")
    assert m.tokenizer == TokenizerRecord("tokenizer.json", eos_token_id=0, chat_template=None)
    t = m.tasks["nlg"]
    assert (t.bottleneck, t.special_tokens, t.special_token_ids, t.metric) == (
        10,
        ("<mr>", "<response>"),
        (1024, 1025),
        "bleu",
    )
    assert t.generation == GenerationDefaults(max_new_tokens=48, max_source_tokens=None)
    assert m.referenced_files() == ["backbone.onnx", "tokenizer.json", "adapters/nlg.onnx_adapter"]


def test_round_trip():
    m = Manifest.from_json(old_manifest(), WHERE)
    j = m.to_json()
    assert json.loads(json.dumps(j)) == j  # plain JSON types only
    assert Manifest.from_json(j, WHERE) == m
    assert j["io"] == old_manifest()["io"]
    assert "n_task_tokens" not in j["tasks"]["nlg"] and "opset" not in j["backbone"]  # dropped: nobody read them
    gqa = dataclasses.replace(m.backbone, architecture="llama", n_kv_head=2, head_dim=64)
    j["backbone"], j["io"] = gqa.to_json(), gqa.io().names()
    back = Manifest.from_json(j, WHERE)
    assert back.backbone == gqa and back.backbone.io().past[0].dims == ("batch", 2, "past_sequence", 64)
    j["tokenizer"]["chat_template"] = "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
    assert Manifest.from_json(j, WHERE).tokenizer.chat_template == j["tokenizer"]["chat_template"]


def _set(path: str, value):
    def edit(m: dict) -> None:
        *parents, last = path.split(".")
        for k in parents:
            m = m[k]
        if value is DELETE:
            del m[last]
        else:
            m[last] = value

    return edit


DELETE = object()
BAD = [
    ("tasks", ["nlg"], "tasks: expected an object, got ['nlg']"),
    ("backbone", None, "backbone: expected an object, got None"),
    ("backbone.n_layer", "x", "backbone.n_layer: expected a positive integer, got 'x'"),
    ("backbone.n_layer", None, "backbone.n_layer: expected a positive integer, got None"),
    ("backbone.n_layer", True, "backbone.n_layer: expected a positive integer, got True"),
    ("backbone.n_layer", DELETE, "backbone.n_layer: missing"),
    ("backbone.n_embd", -128, "backbone.n_embd: expected a positive integer, got -128"),
    ("backbone.vocab_size", 1024.0, "backbone.vocab_size: expected a positive integer, got 1024.0"),
    ("backbone.n_kv_head", 3, "backbone.n_kv_head: expected a divisor of n_head=4, got 3"),
    ("backbone.head_dim", 0, "backbone.head_dim: expected a positive integer, got 0"),
    ("backbone.quantization", "int2", "backbone.quantization: expected one of ['fp32', 'int8', 'int4'], got 'int2'"),
    ("backbone.architecture", "gtp2", "backbone.architecture: expected one of ['gpt2', 'llama'], got 'gtp2'"),
    ("backbone.kv_cache", "paged", "backbone.kv_cache: expected one of ['concat', 'shared'], got 'paged'"),
    ("backbone.file", "", "backbone.file: expected a file name, got ''"),
    ("tokenizer.eos_token_id", 1024, "tokenizer.eos_token_id: expected a token id below 1024, got 1024"),
    (
        "tokenizer.chat_template",
        "no input",
        "tokenizer.chat_template: expected a string with {input} once, got 'no input'",
    ),
    ("tasks.nlg.bottleneck", "10", "tasks.nlg.bottleneck: expected a positive integer, got '10'"),
    ("tasks.nlg.eos_token_id", "0", "tasks.nlg.eos_token_id: expected a token id below 1024, got '0'"),
    ("tasks.nlg.eos_token_id", -1, "tasks.nlg.eos_token_id: expected a token id below 1024, got -1"),
    (
        "tasks.nlg.special_token_ids",
        [1024, "1025"],
        "tasks.nlg.special_token_ids: expected vocab_size + k = [1024, 1025], got [1024, '1025']",
    ),
    (
        "tasks.nlg.special_tokens",
        "<mr>",
        "tasks.nlg.special_tokens: expected a non-empty list of distinct strings, got '<mr>'",
    ),
    (
        "tasks.nlg.template",
        "<mr> <response>",
        "tasks.nlg.template: prompt template '<mr> <response>' must contain {input} exactly once",
    ),
    ("tasks.nlg.generation", [], "tasks.nlg.generation: expected an object, got []"),
    (
        "tasks.nlg.generation.max_new_tokens",
        0,
        "tasks.nlg.generation.max_new_tokens: expected a positive integer, got 0",
    ),
    (
        "tasks.nlg.generation.max_source_tokens",
        "all",
        "tasks.nlg.generation.max_source_tokens: expected a positive integer or null, got 'all'",
    ),
    ("tasks.nlg.trainable_share", -1.0, "tasks.nlg.trainable_share: expected a percentage in [0, 100], got -1.0"),
    ("files", {}, "files: expected an object of file -> sha256 (at least one), got {}"),
    ("files.backbone.onnx", "abc", None),  # see below: a bad digest
    ("schema_version", "1", "schema_version: expected schema version 1, got '1'"),
    ("schema_version", 2, "schema_version 2 is not supported (this edgevlm reads 1)"),
]


@pytest.mark.parametrize("path, value, message", BAD, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD])
def test_bad_field_is_named_in_one_line(path, value, message):
    m = old_manifest()
    if path.startswith("files."):
        m["files"]["backbone.onnx"] = value
        message = "files: expected an object of file -> sha256 (at least one), got {"
    else:
        _set(path, value)(m)
    with pytest.raises(BundleError) as e:
        Manifest.from_json(m, WHERE)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"{WHERE}: {message}") if path.startswith("files.") else text == f"{WHERE}: {message}"


def test_io_names_of_another_layout_are_refused():
    m = old_manifest()
    m["io"]["inputs"] = m["io"]["inputs"][:-1]
    with pytest.raises(BundleError, match=r"^b/manifest\.json: io: names do not match .* n_layer=2$"):
        Manifest.from_json(m, WHERE)


def test_not_an_object_at_all():
    with pytest.raises(BundleError, match=r"^b/manifest\.json: expected an object, got \[1, 2\]$"):
        Manifest.from_json([1, 2], WHERE)


def test_load_manifest_checks_paths_and_checksums(tmp_path):
    from edgevlm.core import bundle

    (tmp_path / "adapters").mkdir()
    m = old_manifest()
    for rel in m["files"]:
        (tmp_path / rel).write_bytes(rel.encode())
        m["files"][rel] = bundle.sha256_file(tmp_path / rel)
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    assert bundle.load_manifest(tmp_path).tasks["nlg"].adapter_file == "adapters/nlg.onnx_adapter"
    (tmp_path / "tokenizer.json").write_text("changed")
    with pytest.raises(BundleError, match=r"tokenizer\.json: checksum mismatch"):
        bundle.load_manifest(tmp_path)
    m["tasks"]["nlg"]["adapter_file"] = "../nlg.onnx_adapter"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"'\.\./nlg\.onnx_adapter' points outside the bundle directory"):
        bundle.load_manifest(tmp_path, verify=False)
    del m["files"]["tokenizer.json"]
    m["tasks"]["nlg"]["adapter_file"] = "adapters/nlg.onnx_adapter"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"tokenizer\.json is used but has no checksum under 'files'$"):
        bundle.load_manifest(tmp_path, verify=False)


def test_describe_lists_backbone_and_tasks():
    from edgevlm.core.bundle import describe

    head, nlg = describe(Manifest.from_json(old_manifest(), WHERE))
    assert head == "gpt2 tiny-v2: n_layer=2 n_embd=128 n_head=4 n_kv_head=4 vocab=1024 context=512 quantization=fp32"
    assert nlg.split("\t") == [
        "nlg",
        "bottleneck=10",
        "params=12,072 (1.22%)",
        "tokens=<mr> <response>",
        "template='<mr> {input} <response>'",
    ]


def _bundle_dir(root, m: dict):
    from edgevlm.core import bundle

    (root / "adapters").mkdir(parents=True)
    for rel in m["files"]:
        (root / rel).write_bytes(rel.encode())
        m["files"][rel] = bundle.sha256_file(root / rel)
    (root / "manifest.json").write_text(json.dumps(m))
    return root


def test_find_task_entry_in_a_bundle_with_the_same_backbone(tmp_path):
    from edgevlm.core.bundle import find_task_entry

    mine = Manifest.from_json(old_manifest(), WHERE).backbone
    other = old_manifest()
    other["backbone"]["quantization"] = "int8"  # another quantization of the same weights: adapters fit
    root = _bundle_dir(tmp_path / "other", other)
    name, entry, source = find_task_entry(root / "adapters/nlg.onnx_adapter", None, mine)
    assert (name, entry.bottleneck, source) == ("nlg", 10, str(root / "manifest.json"))
    with pytest.raises(
        BundleError, match=r"^.*other/manifest\.json: bundle has another backbone; its adapters do not fit$"
    ):
        find_task_entry(root / "adapters/nlg.onnx_adapter", None, dataclasses.replace(mine, fingerprint="f" * 32))


def test_find_task_entry_from_sidecar_or_entry_names_the_bad_field(tmp_path):
    from edgevlm.core.bundle import find_task_entry

    mine = Manifest.from_json(old_manifest(), WHERE).backbone
    fields = {**old_manifest()["tasks"]["nlg"], "name": "nlg2"}
    card = tmp_path / "nlg2.onnx_adapter"
    card.with_suffix(".json").write_text(json.dumps(fields))
    with pytest.raises(BundleError, match=r"nlg2\.json: backbone_fingerprint: missing"):  # a sidecar names its backbone
        find_task_entry(card, None, mine)
    fields["backbone_fingerprint"] = mine.fingerprint
    card.with_suffix(".json").write_text(json.dumps(fields))
    name, entry, _ = find_task_entry(card, None, mine)
    expected = Manifest.from_json(old_manifest(), WHERE).tasks["nlg"]
    assert name == "nlg2" and entry == dataclasses.replace(expected, backbone_fingerprint=mine.fingerprint)
    card.with_suffix(".json").write_text(json.dumps({**fields, "bottleneck": 0}))
    with pytest.raises(BundleError) as e:
        find_task_entry(card, None, mine)
    assert str(e.value) == f"{card.with_suffix('.json')}: bottleneck: expected a positive integer, got 0"
    with pytest.raises(BundleError) as e:
        find_task_entry(card, {**fields, "eos_token_id": 5000}, mine)
    assert str(e.value) == "add_task(entry=...): eos_token_id: expected a token id below 1024, got 5000"


def test_head_dim_required_when_it_cannot_default_and_task_names_checked():
    m = old_manifest()
    m["backbone"]["n_embd"] = 130
    with pytest.raises(BundleError) as e:
        Manifest.from_json(m, WHERE)
    assert str(e.value) == f"{WHERE}: backbone.head_dim: missing (n_embd is not divisible by n_head)"
    m = old_manifest()
    m["tasks"]["../x"] = m["tasks"].pop("nlg")
    with pytest.raises(BundleError) as e:
        Manifest.from_json(m, WHERE)
    assert str(e.value) == f"{WHERE}: tasks: expected task names of letters, digits, '_' or '-', got '../x'"
