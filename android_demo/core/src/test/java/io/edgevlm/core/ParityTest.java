package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Token-for-token parity with the Python runtime's greedy output: every case of every bundle (fp32, int8), every
 * task and the plain backbone, over-long inputs (cut exactly as Python cuts them), stop strings, min_new_tokens.
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
