package io.edgevlm.core;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;

/**
 * The Python side's expectations ({@code fixtures/write_fixtures.py}): found through the system property
 * {@code edgevlm.fixtures} or the environment variable {@code EDGEVLM_FIXTURES}. Without either, the parity tests
 * are skipped with a message (tests/test_android_core.py always sets it and checks that none was skipped).
 */
final class Fixtures {
    private static Map<String, Object> cached;

    private Fixtures() {
    }

    private static String raw() {
        String d = System.getProperty("edgevlm.fixtures");
        return d == null || d.isEmpty() ? System.getenv("EDGEVLM_FIXTURES") : d;
    }

    static boolean missing() {
        return raw() == null || raw().isEmpty();
    }

    /** One skipped test carrying the reason (a factory that returns nothing would not be reported at all). */
    static Stream<DynamicTest> skip() {
        return Stream.of(DynamicTest.dynamicTest("needs fixtures", Fixtures::dir));
    }

    static Path dir() {
        String d = raw();
        assumeTrue(d != null && !d.isEmpty(), "no fixtures: run android_demo/core/fixtures/write_fixtures.py --out DIR, "
                + "then EDGEVLM_FIXTURES=DIR mvn test (or pytest tests/test_android_core.py)");
        return Path.of(d);
    }

    @SuppressWarnings("unchecked")
    static synchronized Map<String, Object> expected() {
        if (cached == null) {
            try {
                cached = (Map<String, Object>) Json.parse(Files.readString(dir().resolve("expected.json"), StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return cached;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o) {
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> list(Object o) {
        return (List<Map<String, Object>>) o;
    }

    static List<Integer> ints(Object o) {
        List<Integer> out = new ArrayList<>();
        for (Object x : (List<?>) o) {
            out.add(((Long) x).intValue());
        }
        return out;
    }

    static List<String> strings(Object o) {
        List<String> out = new ArrayList<>();
        for (Object x : (List<?>) o) {
            out.add((String) x);
        }
        return out;
    }

    /** The generation options of a case ({@code max_new_tokens}, {@code min_new_tokens}, {@code stop}). */
    static GenerationConfig config(Map<String, Object> options) {
        GenerationConfig.Builder b = GenerationConfig.builder();
        for (Map.Entry<String, Object> e : options.entrySet()) {
            switch (e.getKey()) {
                case "max_new_tokens": b.maxNewTokens(((Long) e.getValue()).intValue()); break;
                case "min_new_tokens": b.minNewTokens(((Long) e.getValue()).intValue()); break;
                case "stop": strings(e.getValue()).forEach(b::stop); break;
                default: throw new IllegalArgumentException("fixture option " + e.getKey() + " is not mapped");
            }
        }
        return b.build();
    }

    /** Label of a task name for test names (null = the plain backbone). */
    static String label(Object task) {
        return task == null ? "plain" : (String) task;
    }
}
