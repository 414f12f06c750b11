package io.edgevlm.core;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;

/**
 * What decoding needs to know about the backbone graph, checked against the manifest like Python's
 * {@code check_graph}. The past key/value shape ({@code [batch, kv_heads, past, head_dim]}) is read from the
 * graph's declared inputs, so a grouped-query-attention backbone only needs its manifest fields here.
 */
public final class GraphInfo {
    private static final int INT64 = 7; // ONNX TensorProto.DataType
    public final int nLayer;
    public final int nHead;
    public final int nEmbd;
    public final int vocabSize;
    public final int nPositions;
    /** Key/value heads and head size of the cache, as the graph declares them. */
    public final int kvHeads;
    public final int headDim;
    final List<String> pastNames;
    final List<String> presentNames;
    final List<String> adapterInputs;
    /** LoRA input -> declared dims (graphs exported with a LoRA task; empty otherwise). */
    final Map<String, List<Object>> loraInputs;
    /** Whether the graph has the {@code logits_to_keep} option (older graphs: every position's logits). */
    public final boolean keepsLogits;
    /** Manifest {@code backbone.kv_cache: shared}: the graph can append to one buffer bound as past and present. */
    public final boolean sharedCache;

    private GraphInfo(Manifest m, boolean keepsLogits, Map<String, List<Object>> loraInputs) {
        this.keepsLogits = keepsLogits;
        this.sharedCache = "shared".equals(m.backbone.kvCache);
        this.loraInputs = loraInputs;
        Manifest.Backbone b = m.backbone;
        nLayer = b.nLayer;
        nHead = b.nHead;
        nEmbd = b.nEmbd;
        vocabSize = b.vocabSize;
        nPositions = b.nPositions;
        kvHeads = b.nKvHead; // Llama-family bundles (GQA); GPT-2: one kv head per head
        headDim = b.headDim;
        pastNames = Names.pastNames(nLayer);
        presentNames = Names.presentNames(nLayer);
        adapterInputs = Names.adapterNames(nLayer);
    }

    /** The session's inputs and outputs against the manifest's io names and backbone sizes. */
    static GraphInfo check(OrtSession session, Manifest m, Path path) throws OrtException {
        GraphInfo g = new GraphInfo(m, hasOption(path, Names.LOGITS_TO_KEEP), loraInputs(path));
        Map<String, NodeInfo> inputs = session.getInputInfo();
        List<String> want = new ArrayList<>(List.of(Names.INPUT_IDS, Names.ATTENTION_MASK));
        want.addAll(g.pastNames);
        if (!inputs.keySet().equals(new HashSet<>(want))) {
            List<Object> sorted = new ArrayList<>(inputs.keySet());
            sorted.sort(null);
            throw new BundleException(path + ": graph inputs " + Py.repr(sorted.subList(0, Math.min(4, sorted.size())))
                    + "... do not match the manifest's io.inputs");
        }
        Map<String, NodeInfo> outputs = session.getOutputInfo();
        List<String> wantOut = new ArrayList<>(List.of(Names.LOGITS));
        wantOut.addAll(g.presentNames);
        if (!new ArrayList<>(outputs.keySet()).equals(wantOut)) {
            List<Object> names = new ArrayList<>(outputs.keySet());
            throw new BundleException(path + ": graph outputs " + Py.repr(names.subList(0, Math.min(3, names.size())))
                    + "... do not match the manifest's io.outputs");
        }
        Long[] cache = {null, (long) g.kvHeads, null, (long) g.headDim};
        for (String name : g.pastNames) {
            checkDims(path, name, inputs.get(name), cache);
        }
        for (String name : g.presentNames) {
            checkDims(path, name, outputs.get(name), cache);
        }
        checkDims(path, Names.LOGITS, outputs.get(Names.LOGITS), new Long[] {null, null, (long) g.vocabSize});
        return g;
    }

    static final String METADATA_KEY = "edgevlm.backbone";
    static final List<String> FIELDS = List.of("fingerprint", "architecture", "quantization", "n_layer", "n_head",
            "n_kv_head", "head_dim", "n_embd", "vocab_size", "n_positions", "kv_cache");

    /**
     * Python's {@code identity.check_graph_metadata}: the backbone record the exporter stored in the graph must
     * equal the manifest's, field by field (fingerprint, sizes, context, quantization, cache layout).
     */
    static void checkIdentity(Map<String, String> metadata, Manifest m, Path where) {
        String raw = metadata.get(METADATA_KEY);
        if (raw == null) {
            throw new BundleException(where + ": the graph carries no backbone fingerprint (older or foreign export); "
                    + Values.REEXPORT);
        }
        Object stored;
        try {
            stored = Json.parse(raw);
        } catch (IllegalArgumentException e) {
            stored = null;
        }
        if (!(stored instanceof Map)) {
            throw new BundleException(where + ": metadata " + METADATA_KEY + " is not a JSON object; " + Values.REEXPORT);
        }
        Manifest.Backbone b = m.backbone;
        List<Object> want = List.of(b.fingerprint, b.architecture, b.quantization, (long) b.nLayer, (long) b.nHead,
                (long) b.nKvHead, (long) b.headDim, (long) b.nEmbd, (long) b.vocabSize, (long) b.nPositions, b.kvCache);
        for (int k = 0; k < FIELDS.size(); k++) {
            Map<?, ?> s = (Map<?, ?>) stored;
            String f = FIELDS.get(k);
            Object value = s.containsKey(f) ? s.get(f) : f.equals("kv_cache") ? "concat" : null;
            if (!want.get(k).equals(value)) {
                throw new BundleException(where + ": the graph was exported for backbone." + f + "=" + Py.repr(value)
                        + " but the manifest says " + Py.repr(want.get(k))
                        + " (graph and manifest belong to different exports)");
            }
        }
    }

    /**
     * Whether the graph declares option {@code name} as an optional int64 [1] input (a graph input with a default
     * initializer; Python reads it from {@code get_overridable_initializers()}, which the Java API lacks).
     */
    private static boolean hasOption(Path path, String name) {
        OnnxInputs.Declared d;
        try {
            d = OnnxInputs.optional(path).get(name);
        } catch (IOException e) {
            throw new BundleException(path + ": cannot read the graph's optional inputs (" + e.getMessage() + ")");
        }
        if (d != null && (d.elemType != INT64 || !List.of(1L).equals(d.dims))) {
            throw new BundleException(path + ": graph adapter input " + name + " is declared "
                    + AdapterFile.typeName(d.elemType) + Py.repr(d.dims) + ", expected int64[1]");
        }
        return d != null;
    }

    /** The graph's LoRA inputs (optional float inputs named lora.*) with their declared dims, in graph order. */
    private static Map<String, List<Object>> loraInputs(Path path) {
        Map<String, List<Object>> out = new java.util.LinkedHashMap<>();
        try {
            OnnxInputs.optional(path).forEach((k, d) -> {
                if (k.startsWith("lora.")) {
                    out.put(k, d.dims);
                }
            });
        } catch (IOException e) {
            throw new BundleException(path + ": cannot read the graph's optional inputs (" + e.getMessage() + ")");
        }
        return out;
    }

    /** The declared shape fits {@code want} (fixed dims equal, null = any). */
    private static void checkDims(Path path, String name, NodeInfo info, Long[] want) {
        TensorInfo t = (TensorInfo) info.getInfo();
        long[] got = t.getShape();
        boolean ok = got.length == want.length;
        for (int k = 0; ok && k < got.length; k++) {
            ok = got[k] < 0 || want[k] == null || got[k] == want[k];
        }
        if (!ok) {
            String[] dn = t.getDimensionNames();
            List<Object> shown = new ArrayList<>();
            for (int k = 0; k < got.length; k++) {
                shown.add(got[k] >= 0 ? (Object) got[k] : dn != null && k < dn.length && !dn[k].isEmpty() ? dn[k] : null);
            }
            throw new BundleException(path + ": graph input/output " + name + " has shape " + Py.repr(shown)
                    + ", the manifest implies " + Py.repr(Arrays.asList((Object[]) want)));
        }
    }
}
