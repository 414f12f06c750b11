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
 * The truncation policy against Python's {@code Runtime._encode} for dialogue/QA-style tasks (several turns,
 * max_source_tokens) under budgets from roomy to tight: same ids, same order.
 */
class PromptParityTest {
    @TestFactory
    Stream<DynamicTest> truncationMatchesPython() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        Map<String, Object> fp32 = Fixtures.map(Fixtures.map(Fixtures.expected().get("bundles")).get("fp32"));
        Bundle rt = Shared.bundle(Path.of((String) fp32.get("dir")));
        Task base = rt.task("nlg");
        List<DynamicTest> tests = new ArrayList<>();
        List<Map<String, Object>> cases = Fixtures.list(Fixtures.expected().get("prompts"));
        for (int k = 0; k < cases.size(); k++) {
            Map<String, Object> c = cases.get(k);
            Object maxSrc = c.get("max_source_tokens");
            Task t = new Task("synthetic", base.bottleneck, Fixtures.strings(c.get("special_tokens")),
                    (String) c.get("template"), base.eosTokenId, base.maxNewTokens,
                    maxSrc == null ? null : ((Long) maxSrc).intValue(), base.file, base.adapter);
            int maxNew = ((Long) c.get("max_new_tokens")).intValue();
            tests.add(DynamicTest.dynamicTest("prompt #" + k + " max_new_tokens=" + maxNew, () -> {
                List<Integer> ids = PromptBuilder.encode(rt.tokenizer, rt.graph, t, (String) c.get("input"), maxNew).ids;
                assertEquals(Fixtures.ints(c.get("ids")), ids);
            }));
        }
        return tests.stream();
    }
}
