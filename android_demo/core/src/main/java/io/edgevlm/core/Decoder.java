package io.edgevlm.core;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoraAdapter;
import ai.onnxruntime.OrtSession;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;

/**
 * The key/value-cache loop for one call (batch 1): the prompt in one run, then one token per run ({@link Steps}:
 * on a {@code kv_cache: shared} graph one buffer per layer sized for the call that the graph appends to, else
 * presents fed back as the next past without a copy; reused direct buffers, pinned logits), all under one
 * {@code RunOptions} that selects the call's task adapter. State lives in the call, so calls on several
 * threads share only the session and the adapters, both read-only.
 *
 * <p>Public for its {@link Result} (what {@link Bundle#generate} and {@link Generation} return); decoders are
 * made by {@link Bundle} only.
 */
public final class Decoder {
    private final OrtEnvironment env;
    private final OrtSession session;
    private final GraphInfo g;
    private final OrtLoraAdapter options; // the graph options (logits_to_keep = 1), active in every run; or null
    private final boolean shared; // each call's cache is one buffer per layer sized for the call (Steps)

    /**
     * {@code shared}: keep each call's cache the shared way ({@link Steps}); only for a {@code kv_cache: shared}
     * graph with the {@code logits_to_keep} option, as Python's {@code Steps} (its pinned logits are [1, 1, V]).
     */
    Decoder(OrtEnvironment env, OrtSession session, GraphInfo g, OrtLoraAdapter options, boolean shared) {
        if (shared && (options == null || !g.sharedCache)) {
            throw new IllegalArgumentException("a shared cache needs a kv_cache: shared graph and logits_to_keep");
        }
        this.env = env;
        this.session = session;
        this.g = g;
        this.options = options;
        this.shared = shared;
    }

    /** Whether calls keep their cache the shared way. */
    boolean shared() {
        return shared;
    }

    /** Run options selecting {@code task}'s adapter (null: none) and the graph options. */
    private OrtSession.RunOptions runOptions(Task task) throws OrtException {
        OrtSession.RunOptions ro = new OrtSession.RunOptions();
        try {
            if (task != null) {
                ro.addActiveLoraAdapter(task.adapter); // task switch: nothing reloaded, nothing copied
            }
            if (options != null) {
                ro.addActiveLoraAdapter(options);
            }
            return ro;
        } catch (OrtException | RuntimeException e) {
            ro.close();
            throw e;
        }
    }

    /** A call's runs; {@code capacity}: the positions its runs reach (used on the shared path only). */
    private Steps steps(OrtSession.RunOptions ro, int promptLength, int capacity) throws OrtException {
        return new Steps(env, session, g, ro, promptLength, options != null, shared ? capacity : 0);
    }

    /** The shape of the prompt's logits as the graph makes them under this decoder's options (for tests). */
    long[] prefillShape(List<Integer> prompt, Task task) throws OrtException {
        try (OrtSession.RunOptions ro = runOptions(task); Steps run = steps(ro, prompt.size(), 0)) {
            return run.prefillShape(prompt.stream().mapToLong(Integer::longValue).toArray());
        }
    }

    /**
     * Decodes after {@code prompt}; {@code onText} gets each non-empty piece of text as it completes.
     * {@code stop} (null: never) is asked before the prompt's run and after each token's piece was handed out:
     * once it returns true no further graph run starts, nothing more reaches {@code onText} (text held back for
     * a possible stop string or an incomplete UTF-8 sequence is dropped) and the result is marked cancelled.
     */
    Result run(List<Integer> prompt, String note, Task task, Integer eos, GenerationConfig cfg, ByteLevelBpe tok,
               Consumer<String> onText, BooleanSupplier stop) throws OrtException {
        if (stop != null && stop.getAsBoolean()) {
            return new Result(List.of(), "", note, prompt.size(), 0, 0, 0, true);
        }
        int max = cfg.maxNewTokens;
        OutputText row = new OutputText(tok, cfg.stop);
        StringBuilder text = new StringBuilder();
        SplittableRandom rng = cfg.seed == null ? new SplittableRandom() : new SplittableRandom(cfg.seed);
        long t0 = System.nanoTime();
        long tPrefill = 0;
        int steps = 0;
        boolean cancelled = false;
        try (OrtSession.RunOptions ro = runOptions(task)) {
            long[] ids = new long[prompt.size()];
            for (int k = 0; k < ids.length; k++) {
                ids[k] = prompt.get(k);
            }
            try (Steps run = steps(ro, ids.length, ids.length + max)) {
                run.prefill(ids);
                float[] logits = run.logits;
                tPrefill = System.nanoTime() - t0;
                int seen = ids.length;
                for (int n = 0; n < max; n++) {
                    if (eos != null && n < cfg.minNewTokens) {
                        logits[eos] = Float.NEGATIVE_INFINITY;
                    }
                    int t = cfg.doSample ? Sampling.draw(logits, cfg, rng) : Sampling.argmax(logits);
                    emit(eos != null && t == eos ? row.finish() : row.push(t), text, onText);
                    if (row.done || n + 1 == max) {
                        break;
                    }
                    if (stop != null && stop.getAsBoolean()) {
                        cancelled = true; // between tokens: the next run never starts
                        break;
                    }
                    seen++;
                    run.step(t, seen);
                    steps++;
                }
            }
        }
        if (!cancelled) {
            emit(row.finish(), text, onText);
        }
        return new Result(row.tokens, text.toString(), note, prompt.size(), tPrefill,
                System.nanoTime() - t0 - tPrefill, steps, cancelled);
    }

    /** Last-position logits [V] of the prompt's run and of each {@code forced} token fed after it (the cache path). */
    List<float[]> teacherForced(List<Integer> prompt, List<Integer> forced, Task task) throws OrtException {
        return teacherForced(prompt, forced, task, prompt.size() + forced.size());
    }

    /** As {@link #teacherForced(List, List, Task)} with a shared cache of {@code capacity} positions (tests). */
    List<float[]> teacherForced(List<Integer> prompt, List<Integer> forced, Task task, int capacity)
            throws OrtException {
        List<float[]> out = new java.util.ArrayList<>();
        try (OrtSession.RunOptions ro = runOptions(task)) {
            long[] ids = prompt.stream().mapToLong(Integer::longValue).toArray();
            try (Steps run = steps(ro, ids.length, capacity)) {
                run.prefill(ids);
                out.add(run.logits.clone());
                int seen = ids.length;
                for (int t : forced) {
                    run.step(t, ++seen);
                    out.add(run.logits.clone());
                }
            }
        }
        return out;
    }

    private static void emit(String piece, StringBuilder text, Consumer<String> onText) {
        if (!piece.isEmpty()) {
            text.append(piece);
            if (onText != null) {
                onText.accept(piece);
            }
        }
    }

    /** One call's output: new token ids (EOS excluded), text, and timings. */
    public static final class Result {
        /** The new token ids (EOS excluded), as chosen; on a cancelled call, those decoded before it stopped. */
        public final List<Integer> tokens;
        /** The text, exactly the pieces the call's callback received, concatenated. */
        public final String text;
        /** Why the input was cut (Python's InputTruncated warning text), or null when it fit. */
        public final String note;
        /** Prompt length in tokens (after truncation). */
        public final int promptTokens;
        /** Time of the prompt's run, which also yields the first token. */
        public final long prefillNanos;
        /** Time of the decode steps after the first token (each one graph run). */
        public final long decodeNanos;
        /** Graph runs after the prompt's (one per token after the first). */
        public final int decodeSteps;
        /** True when the call was stopped (cancel handle, interrupt) before EOS, a stop string or max_new_tokens. */
        public final boolean cancelled;

        Result(List<Integer> tokens, String text, String note, int promptTokens, long prefillNanos, long decodeNanos,
               int steps, boolean cancelled) {
            this.tokens = List.copyOf(tokens);
            this.text = text;
            this.note = note;
            this.promptTokens = promptTokens;
            this.prefillNanos = prefillNanos;
            this.decodeNanos = decodeNanos;
            this.decodeSteps = steps;
            this.cancelled = cancelled;
        }

        /** Decode speed: steps after the first token per second (0 when there were none). */
        public double tokensPerSecond() {
            return decodeSteps == 0 ? 0 : decodeSteps / (decodeNanos / 1e9);
        }
    }
}
