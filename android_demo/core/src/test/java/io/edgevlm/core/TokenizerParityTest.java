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

/** Golden vectors from the Python {@code tokenizers} package: ids and decoded text (non-ASCII, task tokens, EOS text). */
class TokenizerParityTest {
    @TestFactory
    Stream<DynamicTest> idsAndDecodeMatchTokenizers() throws Exception {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        Map<String, Object> spec = Fixtures.map(Fixtures.expected().get("tokenizer"));
        ByteLevelBpe tok = ByteLevelBpe.fromJson(Files.readString(Path.of((String) spec.get("file"))));
        List<DynamicTest> tests = new ArrayList<>();
        List<Map<String, Object>> cases = Fixtures.list(spec.get("cases"));
        for (int k = 0; k < cases.size(); k++) {
            Map<String, Object> c = cases.get(k);
            tests.add(DynamicTest.dynamicTest("text #" + k, () -> {
                List<Integer> ids = tok.encode((String) c.get("text"));
                assertEquals(Fixtures.ints(c.get("ids")), ids, "ids of " + Py.repr(c.get("text")));
                assertEquals(c.get("decoded"), tok.decode(ids), "decode");
            }));
        }
        return tests.stream();
    }
}
