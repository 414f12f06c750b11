package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
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

    /**
     * Every row of the shared table (fixtures/bad_bundles.json, which the Python suite runs too) is among the
     * recorded refusals and Java's message matches the row, so a check cannot land on one side only.
     */
    @TestFactory
    Stream<DynamicTest> sharedTableRowsAllRefused() throws Exception {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        Map<String, Object> table = Fixtures.map(Json.parse(java.nio.file.Files.readString(Path.of("fixtures", "bad_bundles.json"))));
        Map<String, Map<String, Object>> recorded = new java.util.HashMap<>();
        for (Map<String, Object> c : Fixtures.list(Fixtures.expected().get("errors"))) {
            recorded.put((String) c.get("name"), c);
        }
        List<DynamicTest> tests = new ArrayList<>();
        for (Map<String, Object> row : Fixtures.list(table.get("cases"))) {
            String name = (String) row.get("name");
            tests.add(DynamicTest.dynamicTest(name, () -> {
                Map<String, Object> c = recorded.get(name);
                assertNotNull(c, "the fixtures did not record the shared row " + name);
                BundleException e = assertThrows(BundleException.class, () -> Bundle.load(Path.of((String) c.get("dir")), 1, false));
                assertTrue(java.util.regex.Pattern.compile((String) row.get("match")).matcher(e.getMessage()).find(),
                        e.getMessage());
                assertEquals(c.get("message"), e.getMessage());
            }));
        }
        return tests.stream();
    }
}
