package io.edgevlm.core;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * The key/value-cache loop for one call (batch 1): the prompt in one run, then one token per run, each run's
 * {@code present.*} outputs fed back unchanged as the next run's {@code past_key_values.*} (no copy), all under
 * one {@code RunOptions} that selects the call's task adapter. State lives in the call, so calls on several
 * threads share only the session and the adapters, both read-only.
 */
final class Decoder {
    private final OrtEnvironment env;
    private final OrtSession session;
    private final GraphInfo g;

    Decoder(OrtEnvironment env, OrtSession session, GraphInfo g) {
        this.env = env;
        this.session = session;
        this.g = g;
    }

    /** Decodes after {@code prompt}; {@code onText} gets each non-empty piece of text as it completes. */
    Result run(List<Integer> prompt, String note, Task task, Integer eos, GenerationConfig cfg, ByteLevelBpe tok,
               Consumer<String> onText) throws OrtException {
        int max = cfg.maxNewTokens;
        OutputText row = new OutputText(tok, cfg.stop);
        StringBuilder text = new StringBuilder();
        SplittableRandom rng = cfg.seed == null ? new SplittableRandom() : new SplittableRandom(cfg.seed);
        long t0 = System.nanoTime();
        long tPrefill = 0;
        int steps = 0;
        try (OrtSession.RunOptions ro = new OrtSession.RunOptions()) {
            if (task != null) {
                ro.addActiveLoraAdapter(task.adapter); // task switch: nothing reloaded, nothing copied
            }
            long[] ids = new long[prompt.size()];
            for (int k = 0; k < ids.length; k++) {
                ids[k] = prompt.get(k);
            }
            OrtSession.Result res = forward(ids, ids.length, null, ro);
            try {
                float[] logits = lastLogits(res);
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
                    seen++;
                    OrtSession.Result next = forward(new long[] {t}, seen, res, ro);
                    res.close(); // after the run: its presents were the inputs
                    res = next;
                    logits = lastLogits(res);
                    steps++;
                }
            } finally {
                res.close();
            }
        }
        emit(row.finish(), text, onText);
        return new Result(row.tokens, text.toString(), note, prompt.size(), tPrefill, System.nanoTime() - t0 - tPrefill, steps);
    }

    private static void emit(String piece, StringBuilder text, Consumer<String> onText) {
        if (!piece.isEmpty()) {
            text.append(piece);
            if (onText != null) {
                onText.accept(piece);
            }
        }
    }

    /** One graph run: {@code ids} [1, s] after {@code past} (null: empty cache); mask [1, total] of ones. */
    private OrtSession.Result forward(long[] ids, int total, OrtSession.Result past, OrtSession.RunOptions ro)
            throws OrtException {
        Map<String, OnnxTensor> feeds = new HashMap<>();
        List<OnnxTensor> owned = new ArrayList<>();
        try {
            OnnxTensor in = OnnxTensor.createTensor(env, LongBuffer.wrap(ids), new long[] {1, ids.length});
            owned.add(in);
            feeds.put(Names.INPUT_IDS, in);
            long[] ones = new long[total];
            java.util.Arrays.fill(ones, 1L);
            OnnxTensor mask = OnnxTensor.createTensor(env, LongBuffer.wrap(ones), new long[] {1, total});
            owned.add(mask);
            feeds.put(Names.ATTENTION_MASK, mask);
            for (int k = 0; k < g.pastNames.size(); k++) {
                OnnxTensor p;
                if (past == null) {
                    p = OnnxTensor.createTensor(env, FloatBuffer.allocate(0), new long[] {1, g.kvHeads, 0, g.headDim});
                    owned.add(p);
                } else {
                    p = (OnnxTensor) value(past, g.presentNames.get(k));
                }
                feeds.put(g.pastNames.get(k), p);
            }
            return session.run(feeds, ro);
        } finally {
            for (OnnxTensor t : owned) {
                t.close();
            }
        }
    }

    private static OnnxValue value(OrtSession.Result r, String name) {
        return r.get(name).orElseThrow(() -> new IllegalStateException("graph gave no output " + name));
    }

    /** Logits of the last position, [V] (a copy: the prefill's [1, s, V] can go). */
    private float[] lastLogits(OrtSession.Result r) {
        OnnxTensor t = (OnnxTensor) value(r, Names.LOGITS);
        long[] shape = t.getInfo().getShape();
        int v = (int) shape[2];
        FloatBuffer fb = t.getFloatBuffer();
        float[] row = new float[v];
        fb.position((int) ((shape[1] - 1) * v));
        fb.get(row);
        return row;
    }

    /** One call's output: new token ids (EOS excluded), text, and timings. */
    public static final class Result {
        public final List<Integer> tokens;
        public final String text;
        /** Why the input was cut (Python's InputTruncated warning text), or null when it fit. */
        public final String note;
        public final int promptTokens;
        public final long prefillNanos;
        /** Time of the decode steps after the first token (each one graph run). */
        public final long decodeNanos;
        public final int decodeSteps;

        Result(List<Integer> tokens, String text, String note, int promptTokens, long prefillNanos, long decodeNanos,
               int steps) {
            this.tokens = List.copyOf(tokens);
            this.text = text;
            this.note = note;
            this.promptTokens = promptTokens;
            this.prefillNanos = prefillNanos;
            this.decodeNanos = decodeNanos;
            this.decodeSteps = steps;
        }

        /** Decode speed: steps after the first token per second (0 when there were none). */
        public double tokensPerSecond() {
            return decodeSteps == 0 ? 0 : decodeSteps / (decodeNanos / 1e9);
        }
    }
}
