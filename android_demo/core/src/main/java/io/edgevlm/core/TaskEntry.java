package io.edgevlm.core;

import java.util.ArrayList;
import java.util.List;

/**
 * One task as the manifest declares it (Python's {@code core.manifest.TaskEntry} + {@code GenerationDefaults}),
 * checked field by field in Python's order with Python's messages; the adapter file is checked against it
 * when the task is loaded ({@link TaskLoader}).
 */
public final class TaskEntry {
    public final String adapterFile;
    public final int bottleneck;
    public final List<String> specialTokens;
    public final String template;
    public final int eosTokenId;
    public final int maxNewTokens;
    /** null: no limit. */
    public final Integer maxSourceTokens;
    /** null: none. */
    public final String metric;
    public final long trainableParams;
    public final double trainableShare;
    /** "adapter" (the bottleneck adapter; bundles before LoRA tasks) or "lora" (a peft LoRA, no task tokens). */
    public final String method;

    private TaskEntry(Fields f, long vocabSize) {
        method = (String) f.get("method", v -> "adapter".equals(v) || "lora".equals(v), "one of ['adapter', 'lora']",
                "adapter");
        boolean lora = method.equals("lora");
        List<String> specials = new ArrayList<>();
        Object list = lora
                ? f.get("special_tokens", v -> v instanceof List && (((List<?>) v).isEmpty() || Fields.strList(v)),
                        "a list of distinct strings")
                : f.get("special_tokens", Fields::strList, "a non-empty list of distinct strings");
        for (Object s : (List<?>) list) {
            specials.add((String) s);
        }
        List<Object> ids = new ArrayList<>();
        for (int k = 0; k < specials.size(); k++) {
            ids.add(vocabSize + k);
        }
        f.get("special_token_ids", v -> Fields.pyEquals(v, ids), "vocab_size + k = " + Py.repr(ids));
        String tpl = (String) f.get("template", Fields::str, "a string with " + Prompts.INPUT_FIELD + " once");
        String bad = Prompts.checkTemplate(tpl, specials);
        if (bad != null) {
            throw new BundleException(f.where + ": " + f.path + ".template: " + bad);
        }
        adapterFile = (String) f.get("adapter_file", Fields::str, "a file name");
        bottleneck = (int) (long) (Long) f.get("bottleneck", Fields::pos, Fields.POS);
        specialTokens = List.copyOf(specials);
        template = tpl;
        eosTokenId = (int) (long) (Long) f.get("eos_token_id", Fields.token(vocabSize), "a token id below " + vocabSize);
        Fields gen = f.sub("generation");
        maxNewTokens = (int) (long) (Long) gen.get("max_new_tokens", Fields::pos, Fields.POS);
        Long ms = (Long) gen.get("max_source_tokens", Fields.opt(Fields::pos), Fields.POS + " or null", null);
        maxSourceTokens = ms == null ? null : (int) (long) ms;
        metric = (String) f.get("metric", Fields.opt(Fields::str), "a metric name or null", null);
        trainableParams = (Long) f.get("trainable_params", v -> v instanceof Long && (Long) v >= 0, "a count >= 0", 0L);
        Object share = f.get("trainable_share", Fields::share, "a percentage in [0, 100]", 0.0);
        trainableShare = ((Number) share).doubleValue();
    }

    /** {@code obj} (the {@code tasks.NAME} object of {@code where}) checked like Python's {@code TaskEntry.from_json}. */
    static TaskEntry fromJson(Object obj, String where, long vocabSize, String path) {
        return new TaskEntry(new Fields(obj, where, path), vocabSize);
    }
}
