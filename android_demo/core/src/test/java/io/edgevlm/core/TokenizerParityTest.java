package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Golden vectors from the Python {@code tokenizers} package: ids and decoded text (non-ASCII, task tokens, EOS text,
 * digits), for the bundles' tokenizer and any extra tokenizer.json the fixtures name (SmolLM2's).
 */
class TokenizerParityTest {
    @TestFactory
    Stream<DynamicTest> idsAndDecodeMatchTokenizers() throws Exception {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        List<Map<String, Object>> specs = new ArrayList<>(List.of(Fixtures.map(Fixtures.expected().get("tokenizer"))));
        specs.addAll(Fixtures.list(Fixtures.expected().getOrDefault("tokenizers_extra", List.of()))); // SmolLM2's
        List<DynamicTest> tests = new ArrayList<>();
        for (Map<String, Object> spec : specs) {
            Path file = Path.of((String) spec.get("file"));
            ByteLevelBpe tok = ByteLevelBpe.fromJson(Files.readString(file));
            List<Map<String, Object>> cases = Fixtures.list(spec.get("cases"));
            for (int k = 0; k < cases.size(); k++) {
                Map<String, Object> c = cases.get(k);
                tests.add(DynamicTest.dynamicTest(file.getParent().getFileName() + " text #" + k, () -> {
                    List<Integer> ids = tok.encode((String) c.get("text"));
                    assertEquals(Fixtures.ints(c.get("ids")), ids, "ids of " + Py.repr(c.get("text")));
                    assertEquals(c.get("decoded"), tok.decode(ids), "decode");
                }));
            }
        }
        return tests.stream();
    }
}
