package io.edgevlm.core;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxTensorLike;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * The graph runs of one call (batch 1) with as little per-step work as the Java API allows: the token id and the
 * attention mask live in direct native-order buffers (ONNX Runtime reads them in place, nothing copied), the
 * logits are a pinned output written straight into a direct buffer of which only the last position's row is read,
 * and the feed map is reused. The key/value cache is kept one of two ways (Python's {@code Steps}):
 * <ul>
 * <li>shared ({@code capacity} > 0; {@code kv_cache: shared} graphs, whose GroupQueryAttention appends in place
 * when past and present are one buffer): one direct buffer per layer's key and value, [1, n_kv_head, capacity,
 * head_dim], fed as {@code past_key_values.*} AND pinned as {@code present.*}, so nothing is copied per step; the
 * graph reads the run's length from the mask ([1, total] ones). Python's {@code SharedCache}, without IOBinding:
 * pinned outputs keep the run options, and so the task's adapter.</li>
 * <li>concat (otherwise): each run's {@code present.*} outputs are fed back as the next {@code past_key_values.*}
 * without a Java-side copy (the previous result is closed once the run that read it has finished); the graph
 * writes past + new into a fresh present each run.</li>
 * </ul>
 * Not thread-safe: one per call.
 */
final class Steps implements AutoCloseable {
    private final OrtEnvironment env;
    private final OrtSession session;
    private final GraphInfo g;
    private final OrtSession.RunOptions ro;
    private final int kept; // positions of the prefill's logits: 1 with logits_to_keep, else the prompt's length
    private final LongBuffer ones; // [n_positions] of ones: the mask is its first `total` entries
    private final LongBuffer id = longs(1); // the decode step's input id, rewritten each step
    private final OnnxTensor idTensor; // [1, 1] over `id`
    private final FloatBuffer logitBuf; // [kept * V]: the prefill's logits, then each step's [V]
    private final OnnxTensor stepOut; // [1, 1, V] over the start of `logitBuf`: a step's pinned logits
    private final Set<String> presents;
    private final Map<String, OnnxTensorLike> feeds = new HashMap<>();
    private final Map<String, OnnxValue> pinned = new HashMap<>();
    private final int capacity; // positions the shared cache holds; 0: the concat way
    private final OnnxTensor[] cache; // shared: per past name, [1, n_kv_head, capacity, head_dim] (also its present)
    private OrtSession.Result last; // concat: its presents are the next run's past
    /** The last run's last-position logits [V] (overwritten by the next run; callers may edit it). */
    final float[] logits;

    /**
     * {@code lastOnly}: {@code ro} feeds the graph option {@code logits_to_keep} = 1, so the prefill's logits are
     * [1, 1, V] (else [1, s, V], of which the last row is read). {@code capacity} > 0: a shared cache for runs of
     * up to that many positions (the prompt plus the new tokens); 0: the concat way.
     */
    Steps(OrtEnvironment env, OrtSession session, GraphInfo g, OrtSession.RunOptions ro, int promptLength,
          boolean lastOnly, int capacity) throws OrtException {
        this.kept = lastOnly ? 1 : promptLength;
        this.env = env;
        this.session = session;
        this.g = g;
        this.ro = ro;
        this.logits = new float[g.vocabSize];
        this.ones = longs(g.nPositions);
        for (int k = 0; k < g.nPositions; k++) {
            ones.put(k, 1L);
        }
        this.idTensor = OnnxTensor.createTensor(env, id, new long[] {1, 1});
        ByteBuffer raw = ByteBuffer.allocateDirect(4 * kept * g.vocabSize).order(ByteOrder.nativeOrder());
        this.logitBuf = raw.asFloatBuffer();
        FloatBuffer row = logitBuf.duplicate();
        // (Buffer): JDK 9+ javac links ByteBuffer's covariant overrides, missing on Android API 26 (animal-sniffer)
        ((Buffer) row).limit(g.vocabSize);
        this.stepOut = OnnxTensor.createTensor(env, row, new long[] {1, 1, g.vocabSize});
        this.capacity = capacity;
        this.cache = capacity > 0 ? sharedCache() : null;
        this.presents = capacity > 0 ? Collections.emptySet() : new LinkedHashSet<>(g.presentNames);
    }

    /** One zeroed direct buffer per layer's key and value, fed as its past and pinned as its present. */
    private OnnxTensor[] sharedCache() throws OrtException {
        long[] shape = {1, g.kvHeads, capacity, g.headDim};
        OnnxTensor[] out = new OnnxTensor[g.pastNames.size()];
        try {
            for (int k = 0; k < out.length; k++) {
                FloatBuffer buf = ByteBuffer.allocateDirect(4 * g.kvHeads * capacity * g.headDim)
                        .order(ByteOrder.nativeOrder()).asFloatBuffer();
                out[k] = OnnxTensor.createTensor(env, buf, shape); // direct: ORT uses it in place
                feeds.put(g.pastNames.get(k), out[k]);
                pinned.put(g.presentNames.get(k), out[k]);
            }
            return out;
        } catch (OrtException | RuntimeException e) {
            closeAll(out);
            idTensor.close();
            stepOut.close();
            throw e;
        }
    }

    private static void closeAll(OnnxTensor[] tensors) {
        for (OnnxTensor t : tensors) {
            if (t != null) {
                t.close();
            }
        }
    }

    private static LongBuffer longs(int n) {
        return ByteBuffer.allocateDirect(8 * n).order(ByteOrder.nativeOrder()).asLongBuffer();
    }

    /** Runs the prompt {@code ids} [1, s] on an empty cache; fills {@link #logits}. */
    void prefill(long[] ids) throws OrtException {
        LongBuffer in = longs(ids.length).put(ids);
        ((Buffer) in).rewind();
        try (OnnxTensor input = OnnxTensor.createTensor(env, in, new long[] {1, ids.length});
             OnnxTensor empty = OnnxTensor.createTensor(env, FloatBuffer.allocate(0), new long[] {1, g.kvHeads, 0, g.headDim});
             OnnxTensor out = OnnxTensor.createTensor(env, logitBuf, new long[] {1, kept, g.vocabSize})) {
            if (cache == null) {
                for (String name : g.pastNames) {
                    feeds.put(name, empty);
                }
            }
            run(input, ids.length, out);
        }
        readLogits(kept - 1);
    }

    /** The logits' shape of the prompt's run as the graph makes it (not pinned): [1, kept, V]. For tests. */
    long[] prefillShape(long[] ids) throws OrtException {
        LongBuffer in = longs(ids.length).put(ids);
        ((Buffer) in).rewind();
        LongBuffer m = ones.duplicate();
        ((Buffer) m).limit(ids.length);
        try (OnnxTensor input = OnnxTensor.createTensor(env, in, new long[] {1, ids.length});
             OnnxTensor mask = OnnxTensor.createTensor(env, m, new long[] {1, ids.length});
             OnnxTensor empty = OnnxTensor.createTensor(env, FloatBuffer.allocate(0), new long[] {1, g.kvHeads, 0, g.headDim})) {
            Map<String, OnnxTensorLike> in0 = new HashMap<>();
            in0.put(Names.INPUT_IDS, input);
            in0.put(Names.ATTENTION_MASK, mask);
            g.pastNames.forEach(name -> in0.put(name, empty));
            try (OrtSession.Result r = session.run(in0, Collections.singleton(Names.LOGITS), ro)) {
                return ((OnnxTensor) present(r, Names.LOGITS)).getInfo().getShape();
            }
        }
    }

    /** Runs one token after everything so far ({@code total} positions including it); fills {@link #logits}. */
    void step(long token, int total) throws OrtException {
        id.put(0, token);
        for (int k = 0; cache == null && k < g.pastNames.size(); k++) {
            feeds.put(g.pastNames.get(k), (OnnxTensor) present(last, g.presentNames.get(k)));
        }
        run(idTensor, total, stepOut);
        readLogits(0);
    }

    /**
     * One graph run: mask [1, total] of ones, logits pinned to {@code out}; concat: presents kept as {@link #last};
     * shared: the presents are the pinned cache buffers (the result owns nothing and is closed at once).
     */
    private void run(OnnxTensor input, int total, OnnxTensor out) throws OrtException {
        if (cache != null && total > capacity) {
            throw new IllegalStateException("a run of " + total + " positions is past the shared key/value cache's "
                    + "capacity of " + capacity + " (the prompt plus max_new_tokens)");
        }
        LongBuffer m = ones.duplicate();
        ((Buffer) m).limit(total);
        try (OnnxTensor mask = OnnxTensor.createTensor(env, m, new long[] {1, total})) {
            feeds.put(Names.INPUT_IDS, input);
            feeds.put(Names.ATTENTION_MASK, mask);
            pinned.put(Names.LOGITS, out);
            OrtSession.Result next = session.run(feeds, presents, pinned, ro);
            if (cache != null) {
                next.close(); // holds only the pinned tensors, which it does not own
                return;
            }
            if (last != null) {
                last.close(); // after the run: its presents were this run's inputs
            }
            last = next;
        }
    }

    private void readLogits(int position) {
        FloatBuffer row = logitBuf.duplicate();
        ((Buffer) row).position(position * g.vocabSize);
        row.get(logits);
    }

    private static OnnxValue present(OrtSession.Result r, String name) {
        return r.get(name).orElseThrow(() -> new IllegalStateException("graph gave no output " + name));
    }

    @Override
    public void close() {
        if (last != null) {
            last.close();
        }
        if (cache != null) {
            closeAll(cache);
        }
        idTensor.close();
        stepOut.close();
    }
}
