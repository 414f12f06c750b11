package io.edgevlm.core;

import ai.onnxruntime.OrtLoraAdapter;
import java.nio.file.Path;
import java.util.List;

/** One task of a loaded bundle: prompt format, generation defaults and its adapter, loaded once and shared. */
public final class Task {
    public final String name;
    public final int bottleneck;
    public final List<String> specialTokens;
    public final String template;
    public final int eosTokenId;
    public final int maxNewTokens;
    /** The task's max_source_tokens (context kept from its beginning), or null for no limit. */
    public final Integer maxSourceTokens;
    public final Path file;
    final OrtLoraAdapter adapter;

    Task(String name, int bottleneck, List<String> specialTokens, String template, int eosTokenId, int maxNewTokens,
         Integer maxSourceTokens, Path file, OrtLoraAdapter adapter) {
        this.name = name;
        this.bottleneck = bottleneck;
        this.specialTokens = List.copyOf(specialTokens);
        this.template = template;
        this.eosTokenId = eosTokenId;
        this.maxNewTokens = maxNewTokens;
        this.maxSourceTokens = maxSourceTokens;
        this.file = file;
        this.adapter = adapter;
    }

    @Override
    public String toString() {
        return name + "\tbottleneck=" + bottleneck + "\ttokens=" + String.join(" ", specialTokens) + "\ttemplate="
                + Py.repr(template);
    }
}
