package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared key/value cache ({@code kv_cache: shared} bundles: one buffer per layer fed as past and pinned as
 * present) against the concat way on the same bundle and run options: the same logits within 1e-5 at every
 * teacher-forced step and the same greedy tokens (which are also Python's), with a task and without; the task's
 * adapter active on the shared path (its logits differ from the plain backbone's); a run past the cache's capacity
 * refused with an exception, after which the bundle still decodes correctly.
 */
class SharedCacheTest {
    private static final double TOL = 1e-5;

    @TestFactory
    Stream<DynamicTest> sharedEqualsConcat() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        List<DynamicTest> tests = new ArrayList<>();
        for (Map.Entry<String, Object> b : Fixtures.map(Fixtures.expected().get("bundles")).entrySet()) {
            Map<String, Object> spec = Fixtures.map(b.getValue());
            Path dir = Path.of((String) spec.get("dir"));
            if (!(Boolean) spec.get("keeps_logits")) {
                tests.add(DynamicTest.dynamicTest(b.getKey() + " (no logits_to_keep): concat only", () ->
                        assertThrows(IllegalArgumentException.class, () -> Shared.bundle(dir).decoder(true))));
                continue;
            }
            for (Map<String, Object> f : Fixtures.list(spec.get("forced"))) {
                String name = b.getKey() + " " + Fixtures.label(f.get("task"));
                tests.add(DynamicTest.dynamicTest(name + " logits", () -> forcedLogits(dir, f)));
            }
            for (Map<String, Object> c : Fixtures.list(spec.get("cases"))) {
                String name = b.getKey() + " " + Fixtures.label(c.get("task")) + " tokens";
                tests.add(DynamicTest.dynamicTest(name, () -> greedyTokens(dir, c)));
            }
            tests.add(DynamicTest.dynamicTest(b.getKey() + " adapter active", () -> adapterActive(dir, spec)));
            tests.add(DynamicTest.dynamicTest(b.getKey() + " past capacity", () -> pastCapacity(dir, spec)));
        }
        return tests.stream();
    }

    /** The bundle decodes the shared way by default (every fixture bundle with the option is kv_cache: shared). */
    private static Decoder shared(Bundle rt) {
        assertTrue(rt.graph.sharedCache, "the fixture bundle says kv_cache: shared");
        Decoder d = rt.decoder(true);
        assertTrue(d.shared(), "shared decoder");
        assertTrue(rt.decoder(true) == d, "the bundle's own decoder is the shared one");
        return d;
    }

    private static void forcedLogits(Path dir, Map<String, Object> f) throws Exception {
        Bundle rt = Shared.bundle(dir);
        Task task = rt.task((String) f.get("task"));
        List<Integer> prompt = Fixtures.ints(f.get("prompt"));
        List<Integer> forced = Fixtures.ints(f.get("forced"));
        List<float[]> a = shared(rt).teacherForced(prompt, forced, task);
        List<float[]> b = rt.decoder(false).teacherForced(prompt, forced, task);
        assertEquals(forced.size() + 1, a.size(), "one logits row per run");
        for (int k = 0; k < a.size(); k++) {
            assertEquals(0, maxDiff(a.get(k), b.get(k)), TOL, "shared vs concat logits at step " + k);
        }
    }

    private static void greedyTokens(Path dir, Map<String, Object> c) throws Exception {
        Bundle rt = Shared.bundle(dir);
        Task t = rt.task((String) c.get("task"));
        GenerationConfig cfg = Fixtures.config(Fixtures.map(c.get("options")))
                .withDefaultMax(t != null ? t.maxNewTokens : Bundle.DEFAULT_MAX_NEW_TOKENS);
        List<Integer> prompt = Fixtures.ints(c.get("prompt"));
        Integer eos = t != null ? t.eosTokenId : rt.manifest.eosTokenId;
        Decoder.Result a = shared(rt).run(prompt, null, t, eos, cfg, rt.tokenizer, null, null);
        Decoder.Result b = rt.decoder(false).run(prompt, null, t, eos, cfg, rt.tokenizer, null, null);
        assertEquals(Fixtures.ints(c.get("tokens")), a.tokens, "shared: Python's tokens");
        assertEquals(b.tokens, a.tokens, "shared vs concat tokens");
    }

    /** On the shared path the task changes the output: nlg's logits on plain ids differ from the backbone's. */
    private static void adapterActive(Path dir, Map<String, Object> spec) throws Exception {
        Bundle rt = Shared.bundle(dir);
        Map<String, Object> plain = plainForced(spec);
        List<Integer> prompt = Fixtures.ints(plain.get("prompt"));
        List<Integer> forced = Fixtures.ints(plain.get("forced"));
        List<float[]> withTask = shared(rt).teacherForced(prompt, forced, rt.task("nlg"));
        List<float[]> without = shared(rt).teacherForced(prompt, forced, null);
        for (int k = 0; k < withTask.size(); k++) {
            assertTrue(maxDiff(withTask.get(k), without.get(k)) > 1e-3, "nlg changes the logits at step " + k);
        }
    }

    /** A run past the capacity: IllegalStateException naming it, nothing run; the next call is still right. */
    private static void pastCapacity(Path dir, Map<String, Object> spec) throws Exception {
        Bundle rt = Shared.bundle(dir);
        Map<String, Object> plain = plainForced(spec);
        List<Integer> prompt = Fixtures.ints(plain.get("prompt"));
        List<Integer> forced = Fixtures.ints(plain.get("forced"));
        Decoder d = shared(rt);
        int room = prompt.size() + 1; // the prompt and one forced token fit, the second does not
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> d.teacherForced(prompt, forced, null, room));
        assertEquals("a run of " + (room + 1) + " positions is past the shared key/value cache's capacity of "
                + room + " (the prompt plus max_new_tokens)", e.getMessage());
        assertThrows(IllegalStateException.class, () -> d.teacherForced(prompt, forced, null, prompt.size() - 1),
                "a prompt longer than the capacity");
        List<float[]> after = d.teacherForced(prompt, forced, null);
        List<?> want = (List<?>) Fixtures.list(plain.get("steps")).get(0).get("logits");
        int id = Fixtures.ints(Fixtures.list(plain.get("steps")).get(0).get("ids")).get(0);
        assertEquals(((Number) want.get(0)).doubleValue(), after.get(0)[id], 1e-4, "Python's top logit afterwards");
    }

    private static Map<String, Object> plainForced(Map<String, Object> spec) {
        for (Map<String, Object> f : Fixtures.list(spec.get("forced"))) {
            if (f.get("task") == null) {
                return f;
            }
        }
        throw new IllegalStateException("the fixtures have no plain-backbone teacher-forced case");
    }

    private static double maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length, "logits length");
        double m = 0;
        for (int k = 0; k < a.length; k++) {
            m = Math.max(m, Math.abs((double) a[k] - b[k]));
        }
        return m;
    }
}
