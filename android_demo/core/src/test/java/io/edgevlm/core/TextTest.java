package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Fixture-free checks of the text helpers against values printed by CPython: incremental UTF-8 with
 * errors="replace", repr(), str.strip() whitespace, the JSON reader, and option validation messages.
 */
class TextTest {
    private static List<String> decode(byte[]... chunks) {
        Utf8Stream s = new Utf8Stream();
        List<String> out = new ArrayList<>();
        for (byte[] c : chunks) {
            out.add(s.push(c));
        }
        out.add(s.flush());
        return out;
    }

    private static byte[] b(int... v) {
        byte[] out = new byte[v.length];
        for (int k = 0; k < v.length; k++) {
            out[k] = (byte) v[k];
        }
        return out;
    }

    @Test
    void utf8MatchesPythonIncrementalDecoder() {
        assertEquals(Arrays.asList("", "\u20ac", ""), decode(b(0xe2, 0x82), b(0xac)));
        assertEquals(Arrays.asList("\ufffd", "a", ""), decode(b(0xff), b('a')));
        assertEquals(Arrays.asList("\ufffdA", ""), decode(b(0xe2, 0x82, 'A')));
        assertEquals(Arrays.asList("", "\ufffd"), decode(b(0xf0, 0x9f, 0x98)));
        assertEquals(Arrays.asList("\ufffd\ufffd\ufffd", ""), decode(b(0xed, 0xa0, 0x80)));
        assertEquals(Arrays.asList("", "\ud83d\ude00x", ""), decode(b(0xf0, 0x9f), b(0x98, 0x80, 'x')));
    }

    @Test
    void reprAndStripAsPython() {
        assertEquals("\"it's\"", Py.repr("it's"));
        assertEquals("'a\"b'", Py.repr("a\"b"));
        assertEquals("'x\\ny'", Py.repr("x\ny"));
        assertEquals("[1, 'a', None, True]", Py.repr(Arrays.asList(1L, "a", null, true)));
        assertEquals("x y", Py.strip("\u00a0\u3000\u2028 x y\t\u0085\u001c"));
        assertEquals("\u200bx", Py.strip("\u200bx")); // zero-width space is not whitespace in Python either
    }

    @Test
    void jsonReader() {
        Object v = Json.parse("{\"a\": [1, 2.5, \"\\u00e9\\n\", true, null], \"b\": {}}");
        assertEquals(Map.of("a", Arrays.asList(1L, 2.5, "\u00e9\n", true, null), "b", Map.of()), v);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\": 1,}"));
        assertTrue(e.getMessage().contains("at char"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Json.parse("[1] x"));
    }

    @Test
    void optionsValidatedWithPythonsMessages() {
        ConfigException e = assertThrows(ConfigException.class,
                () -> GenerationConfig.builder().maxNewTokens(4).minNewTokens(5).build());
        assertEquals("min_new_tokens=5 is larger than max_new_tokens=4", e.getMessage());
        e = assertThrows(ConfigException.class, () -> GenerationConfig.builder().sample(1.0, 0, 1.5, 1L).build());
        assertEquals("top_p must be in (0, 1], got 1.5", e.getMessage());
    }

    @Test
    void splitTurnsGroupsExchangesAtTheNewestOpener() {
        List<String> sp = List.of("<user>", "<system>");
        assertEquals(List.of("persona text ", "<user> hi <system> hello", "<user> how"),
                Prompts.splitTurns("persona text <user>hi<system>  hello <user> how", sp));
    }
}
