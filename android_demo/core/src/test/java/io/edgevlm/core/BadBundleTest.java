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
 * Broken bundles (tampered, escaping paths, unknown schema, every manifest field check ...) refused with Python's
 * exact message; the few odd edits Python accepts must load in Java too.
 */
class BadBundleTest {
    @TestFactory
    Stream<DynamicTest> refusedWithPythonsMessage() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        List<DynamicTest> tests = new ArrayList<>();
        for (Map<String, Object> c : Fixtures.list(Fixtures.expected().get("errors"))) {
            tests.add(DynamicTest.dynamicTest((String) c.get("name"), () -> {
                if (c.get("error") == null) { // odd but valid for Python: Java loads it as well
                    Bundle.load(Path.of((String) c.get("dir")), 1, false).close();
                    return;
                }
                assertEquals("BundleError", c.get("error"), "the Python side raised a BundleError");
                BundleException e = assertThrows(BundleException.class, () -> Bundle.load(Path.of((String) c.get("dir")), 1, false));
                assertEquals(c.get("message"), e.getMessage());
            }));
        }
        return tests.stream();
    }
}
