package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * ONNX Runtime session config entries ({@link Bundle#load(Path, Integer, boolean, List, String, Map)}, the CLI's
 * {@code --session-config KEY=VALUE}; Python's {@code Runtime.load(session_options={...})}): entries ONNX Runtime
 * takes change no greedy token of the fixtures' fp32 bundle; an entry whose value it refuses is one line naming it.
 */
class SessionConfigTest {
    private static Path fp32() {
        return Path.of((String) Fixtures.map(Fixtures.map(Fixtures.expected().get("bundles")).get("fp32")).get("dir"));
    }

    @Test
    void acceptedEntriesKeepPythonsTokens() {
        Map<String, Object> c = Fixtures.list(Fixtures.map(Fixtures.map(Fixtures.expected().get("bundles")).get("fp32"))
                .get("cases")).get(0);
        Map<String, String> cfg = new LinkedHashMap<>();
        cfg.put("session.intra_op.allow_spinning", "1"); // overrides spin=false
        cfg.put("session.dynamic_block_base", "4");
        cfg.put("session.disable_prepacking", "1");
        try (Bundle rt = Bundle.load(fp32(), 1, false, Collections.emptyList(), "onnx", cfg)) {
            Decoder.Result r = rt.generate((String) c.get("input"), (String) c.get("task"),
                    Fixtures.config(Fixtures.map(c.get("options"))));
            assertEquals(Fixtures.ints(c.get("tokens")), r.tokens, "Python's greedy tokens");
        }
    }

    @Test
    void refusedEntryIsOneLineNamingIt() {
        Map<String, String> cfg = new LinkedHashMap<>();
        cfg.put("session.disable_prepacking", "1");
        cfg.put("session.graph_optimizations_loop_level", "two");
        ConfigException x = assertThrows(ConfigException.class,
                () -> Bundle.load(fp32(), 1, false, Collections.emptyList(), "onnx", cfg));
        assertTrue(x.getMessage().startsWith("session config entry 'session.graph_optimizations_loop_level'='two' is "
                + "refused by ONNX Runtime ("), x.getMessage());
        assertEquals(-1, x.getMessage().indexOf('\n'), "one line");
        Map<String, String> empty = Collections.singletonMap("", "1");
        ConfigException y = assertThrows(ConfigException.class,
                () -> Bundle.load(fp32(), 1, false, Collections.emptyList(), "onnx", empty));
        assertEquals("session config entries must be non-empty key -> value strings, got '': '1'", y.getMessage());
    }

    @Test
    void cliTakesEntriesAndRefusesAMalformedOne() {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8);
        String dir = fp32().toString();
        int rc = Cli.run(new String[] {dir, "--list", "--session-config", "session.dynamic_block_base=4"}, out);
        assertEquals(0, rc);
        assertTrue(buf.toString(StandardCharsets.UTF_8).startsWith(dir + ": "), "the bundle loads");
        ConfigException x = assertThrows(ConfigException.class,
                () -> Cli.run(new String[] {dir, "--list", "--session-config", "session.dynamic_block_base"}, out));
        assertEquals("argument --session-config: expected KEY=VALUE (an ONNX Runtime session config entry), got "
                + "'session.dynamic_block_base'", x.getMessage());
    }
}
