package io.edgevlm.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Graph input/output and adapter tensor names, as Python's {@code edgevlm.core.names}
 * ({@code edgevlm/core/names.py}) declares them.
 */
public final class Names {
    public static final String INPUT_IDS = "input_ids";
    public static final String ATTENTION_MASK = "attention_mask";
    public static final String LOGITS = "logits";
    /** Graph option (optional input int64 [1]): logits of the last k positions only; its default 0 keeps all. */
    public static final String LOGITS_TO_KEEP = "logits_to_keep";
    public static final String TASK_EMBEDDINGS = "task_embeddings";
    public static final String BOTTLENECK_DIM = "bottleneck";
    public static final String TASK_TOKENS_DIM = "task_tokens";
    static final String[] ADAPTER_PARTS = {"ln.weight", "ln.bias", "down.weight", "down.bias", "up.weight", "up.bias"};

    private Names() {
    }

    /** Past key/value input names in graph order: key0, value0, key1, ... */
    public static List<String> pastNames(int nLayer) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < nLayer; i++) {
            out.add("past_key_values." + i + ".key");
            out.add("past_key_values." + i + ".value");
        }
        return out;
    }

    public static List<String> presentNames(int nLayer) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < nLayer; i++) {
            out.add("present." + i + ".key");
            out.add("present." + i + ".value");
        }
        return out;
    }

    /** All swappable adapter input names (per-layer adapters, then the task embeddings). */
    public static List<String> adapterNames(int nLayer) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < nLayer; i++) {
            for (String p : ADAPTER_PARTS) {
                out.add("adapter." + i + "." + p);
            }
        }
        out.add(TASK_EMBEDDINGS);
        return out;
    }

    /**
     * The graph-declared shape of adapter input {@code name}: Long for fixed dims, String for symbolic ones.
     * (The Java API does not expose overridable initializers, so the declared shape comes from the naming rule
     * the exporter builds the graph with.)
     */
    public static List<Object> symbolicAdapterShape(String name, long nEmbd) {
        if (name.equals(TASK_EMBEDDINGS)) {
            return List.of(TASK_TOKENS_DIM, nEmbd);
        }
        String part = name.split("\\.", 3)[2];
        switch (part) {
            case "ln.weight": case "ln.bias": case "up.bias":
                return List.of(nEmbd);
            case "down.weight":
                return List.of(nEmbd, BOTTLENECK_DIM);
            case "down.bias":
                return List.of(BOTTLENECK_DIM);
            case "up.weight":
                return List.of(BOTTLENECK_DIM, nEmbd);
            default:
                throw new IllegalArgumentException("unknown adapter part " + part);
        }
    }
}
