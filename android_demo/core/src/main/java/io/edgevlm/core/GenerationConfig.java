package io.edgevlm.core;

import java.util.ArrayList;
import java.util.List;

/**
 * How to decode, validated like Python's {@code GenerationConfig}: greedy by default; {@code doSample} draws with
 * temperature / top-k / top-p from {@code seed}; {@code minNewTokens} suppresses EOS; {@code stop} ends the output
 * before the first stop string. {@code maxNewTokens} null means the task's default. Beam search is Python-only.
 */
public final class GenerationConfig {
    public final Integer maxNewTokens;
    public final int minNewTokens;
    public final boolean doSample;
    public final double temperature;
    public final int topK;
    public final double topP;
    public final Long seed;
    public final List<String> stop;

    private GenerationConfig(Builder b) {
        maxNewTokens = b.maxNewTokens;
        minNewTokens = b.minNewTokens;
        doSample = b.doSample;
        temperature = b.temperature;
        topK = b.topK;
        topP = b.topP;
        seed = b.seed;
        stop = List.copyOf(b.stop);
        if (maxNewTokens != null && maxNewTokens < 1) {
            throw new ConfigException("max_new_tokens must be an integer >= 1, got " + maxNewTokens);
        }
        if (minNewTokens < 0) {
            throw new ConfigException("min_new_tokens must be an integer >= 0, got " + minNewTokens);
        }
        if (topK < 0) {
            throw new ConfigException("top_k must be an integer >= 0, got " + topK);
        }
        if (maxNewTokens != null && minNewTokens > maxNewTokens) {
            throw new ConfigException("min_new_tokens=" + minNewTokens + " is larger than max_new_tokens=" + maxNewTokens);
        }
        if (!(Double.isFinite(temperature) && temperature > 0)) {
            throw new ConfigException("temperature must be a positive number, got " + Py.repr(temperature));
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new ConfigException("top_p must be in (0, 1], got " + Py.repr(topP));
        }
        if (seed != null && seed < 0) {
            throw new ConfigException("seed must be a non-negative integer or None, got " + seed);
        }
        for (String s : stop) {
            if (s == null || s.isEmpty()) {
                throw new ConfigException("stop must be a list of non-empty strings, got " + Py.repr(new ArrayList<Object>(b.stop)));
            }
        }
    }

    /** Greedy decoding with the task's max_new_tokens. */
    public static GenerationConfig greedy() {
        return builder().build();
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The same settings with {@code maxNewTokens} filled in (when it was null). */
    GenerationConfig withDefaultMax(int max) {
        if (maxNewTokens != null) {
            return this;
        }
        Builder b = new Builder();
        b.maxNewTokens = max;
        b.minNewTokens = minNewTokens;
        b.doSample = doSample;
        b.temperature = temperature;
        b.topK = topK;
        b.topP = topP;
        b.seed = seed;
        b.stop = new ArrayList<>(stop);
        return b.build();
    }

    /** Mutable builder; {@link #build()} validates. */
    public static final class Builder {
        private Integer maxNewTokens;
        private int minNewTokens;
        private boolean doSample;
        private double temperature = 1.0;
        private int topK;
        private double topP = 1.0;
        private Long seed;
        private List<String> stop = new ArrayList<>();

        public Builder maxNewTokens(Integer v) {
            maxNewTokens = v;
            return this;
        }

        public Builder minNewTokens(int v) {
            minNewTokens = v;
            return this;
        }

        public Builder sample(double temp, int k, double p, Long seedValue) {
            doSample = true;
            temperature = temp;
            topK = k;
            topP = p;
            seed = seedValue;
            return this;
        }

        public Builder stop(String s) {
            stop.add(s);
            return this;
        }

        public GenerationConfig build() {
            return new GenerationConfig(this);
        }
    }
}
