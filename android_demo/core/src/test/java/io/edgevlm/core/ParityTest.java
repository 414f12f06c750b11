package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Token-for-token parity with the Python runtime's greedy output: every case of every bundle (tiny GPT-2 and, when
 * the fixtures have it, a Llama-family backbone with grouped-query attention; fp32, int8 and int4), every task and the
 * plain backbone, over-long inputs (cut exactly as Python cuts them), stop strings, min_new_tokens.
 */
class ParityTest {
    @TestFactory
    Stream<DynamicTest> greedyOutputsMatchPython() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        Map<String, Object> bundles = Fixtures.map(Fixtures.expected().get("bundles"));
        List<DynamicTest> tests = new ArrayList<>();
        for (Map.Entry<String, Object> b : bundles.entrySet()) {
            Map<String, Object> spec = Fixtures.map(b.getValue());
            Path dir = Path.of((String) spec.get("dir"));
            List<Map<String, Object>> cases = Fixtures.list(spec.get("cases"));
            for (int k = 0; k < cases.size(); k++) {
                Map<String, Object> c = cases.get(k);
                String name = b.getKey() + " " + Fixtures.label(c.get("task")) + " #" + k;
                tests.add(DynamicTest.dynamicTest(name, () -> check(dir, c)));
            }
        }
        return tests.stream();
    }

    /** Per bundle: {@code run --list}'s lines and the key/value cache layout ([batch, n_kv_head, past, head_dim]). */
    @TestFactory
    Stream<DynamicTest> bundleFactsMatchPython() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        List<DynamicTest> tests = new ArrayList<>();
        for (Map.Entry<String, Object> b : Fixtures.map(Fixtures.expected().get("bundles")).entrySet()) {
            Map<String, Object> spec = Fixtures.map(b.getValue());
            tests.add(DynamicTest.dynamicTest(b.getKey() + " describe + cache", () -> {
                Bundle rt = Shared.bundle(Path.of((String) spec.get("dir")));
                assertEquals(spec.get("describe"), rt.manifest.describe(), "run --list lines");
                Map<String, Object> cache = Fixtures.map(spec.get("cache"));
                List<Object> want = List.of(cache.get("n_layer"), cache.get("n_kv_head"), cache.get("head_dim"));
                List<Object> got = List.of((long) rt.graph.nLayer, (long) rt.graph.kvHeads, (long) rt.graph.headDim);
                assertEquals(want, got, "n_layer, n_kv_head, head_dim of the cache");
                checkKeptLogits(rt, spec);
            }));
            for (Map<String, Object> f : Fixtures.list(spec.get("forced"))) {
                String name = b.getKey() + " " + Fixtures.label(f.get("task")) + " teacher-forced logits";
                tests.add(DynamicTest.dynamicTest(name, () -> checkForced(Path.of((String) spec.get("dir")), f)));
            }
        }
        return tests.stream();
    }

    /** {@code chat=True}: the chat template's user turn, token for token; refused with Python's messages. */
    @TestFactory
    Stream<DynamicTest> chatMatchesPython() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        Map<String, Object> chat = Fixtures.map(Fixtures.expected().get("chat"));
        Path dir = Path.of((String) chat.get("dir"));
        List<DynamicTest> tests = new ArrayList<>();
        for (Map<String, Object> c : Fixtures.list(chat.get("cases"))) {
            tests.add(DynamicTest.dynamicTest("chat " + Fixtures.label(null), () -> {
                Bundle rt = Shared.bundle(dir);
                GenerationConfig cfg = Fixtures.config(Fixtures.map(c.get("options")));
                PromptBuilder.Prompt p = rt.encode((String) c.get("input"), null, cfg, true);
                assertEquals(Fixtures.ints(c.get("prompt")), p.ids, "prompt ids");
                assertEquals(c.get("truncated"), p.note != null, "truncation reported");
                Decoder.Result r = rt.generate((String) c.get("input"), null, cfg, null, true);
                assertEquals(Fixtures.ints(c.get("tokens")), r.tokens, "output tokens");
                assertEquals(c.get("text"), r.text, "output text");
            }));
        }
        for (Map<String, Object> e : Fixtures.list(chat.get("errors"))) {
            tests.add(DynamicTest.dynamicTest("chat refused: " + Fixtures.label(e.get("task")), () -> {
                Bundle rt = Shared.bundle(Path.of((String) e.get("dir")));
                ConfigException x = assertThrows(ConfigException.class,
                        () -> rt.generate("hello", (String) e.get("task"), GenerationConfig.greedy(), null, true));
                assertEquals(e.get("message"), x.getMessage());
            }));
        }
        return tests.stream();
    }

    /**
     * The graph option logits_to_keep: fed exactly when Python feeds it, so that the prompt's run makes logits
     * [1, 1, V] (the LM head on the last position only); a graph without it ([1, s, V]) still runs.
     */
    private static void checkKeptLogits(Bundle rt, Map<String, Object> spec) {
        boolean keeps = (Boolean) spec.get("keeps_logits");
        assertEquals(keeps, rt.graph.keepsLogits, "the graph has the logits_to_keep option");
        List<Integer> prompt = Fixtures.ints(Fixtures.list(spec.get("cases")).get(0).get("prompt"));
        long[] shape = rt.prefillShape(prompt, "nlg");
        long[] want = {1, keeps ? 1 : prompt.size(), rt.graph.vocabSize};
        assertEquals(java.util.Arrays.toString(want), java.util.Arrays.toString(shape), "prompt logits' shape");
    }

    /** Python's top-10 logits at every cached step, within 1e-4 (same kernels), and the same argmax. */
    private static void checkForced(Path dir, Map<String, Object> f) {
        Bundle rt = Shared.bundle(dir);
        List<float[]> got = rt.teacherForced(Fixtures.ints(f.get("prompt")), Fixtures.ints(f.get("forced")),
                (String) f.get("task"));
        List<Map<String, Object>> steps = Fixtures.list(f.get("steps"));
        assertEquals(steps.size(), got.size(), "one logits row per run");
        for (int k = 0; k < steps.size(); k++) {
            List<Integer> ids = Fixtures.ints(steps.get(k).get("ids"));
            List<?> want = (List<?>) steps.get(k).get("logits");
            assertEquals(ids.get(0), Sampling.argmax(got.get(k)), "argmax at step " + k);
            for (int j = 0; j < ids.size(); j++) {
                double w = ((Number) want.get(j)).doubleValue();
                assertEquals(w, got.get(k)[ids.get(j)], 1e-4, "logit of id " + ids.get(j) + " at step " + k);
            }
        }
    }

    private static void check(Path dir, Map<String, Object> c) {
        Bundle rt = Shared.bundle(dir);
        String task = (String) c.get("task");
        String input = (String) c.get("input");
        GenerationConfig cfg = Fixtures.config(Fixtures.map(c.get("options")));
        PromptBuilder.Prompt p = rt.encode(input, rt.task(task), cfg);
        assertEquals(Fixtures.ints(c.get("prompt")), p.ids, "prompt ids");
        assertEquals(c.get("truncated"), p.note != null, "truncation reported");
        StringBuilder streamed = new StringBuilder();
        Decoder.Result r = rt.generate(input, task, cfg, streamed::append);
        assertEquals(Fixtures.ints(c.get("tokens")), r.tokens, "output tokens");
        assertEquals(c.get("text"), r.text, "output text");
        assertEquals(r.text, streamed.toString(), "streamed pieces join to the text");
        Decoder.Result fromIds = rt.generateTokens(p.ids, task, cfg);
        assertEquals(r.tokens, fromIds.tokens, "generateTokens on the same prompt");
    }
}
