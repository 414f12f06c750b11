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
 * Conversations ({@link Chat}, {@link Bundle#encodeChat}) against the Python server's request path
 * ({@code fixtures/chat_cases.py}): the rendered prompt ids and the greedy reply of each conversation the Python side
 * takes (the plain model under a {@code chat_turns} record and without a chat template; the dialogue task's turns;
 * one user message to nlg), and Python's refusal line for each it refuses (its server's 400 message; Python says
 * {@code max_tokens} where the Java core names its option {@code max_new_tokens}).
 */
class ChatTest {
    @TestFactory
    Stream<DynamicTest> conversationsMatchPython() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        Map<String, Object> rec = Fixtures.map(Fixtures.expected().get("chat_turns"));
        List<DynamicTest> tests = new ArrayList<>();
        for (Map<String, Object> c : Fixtures.list(rec.get("cases"))) {
            tests.add(DynamicTest.dynamicTest(name(c), () -> {
                Bundle rt = Shared.bundle(Path.of((String) c.get("dir")));
                String task = (String) c.get("task");
                List<Chat.Message> msgs = messages(c);
                GenerationConfig cfg = config(c);
                assertEquals(Fixtures.ints(c.get("prompt")), rt.encodeChat(msgs, task, cfg).ids, "prompt ids");
                StringBuilder streamed = new StringBuilder();
                Decoder.Result r = rt.generateChat(msgs, task, cfg, streamed::append, null);
                assertEquals(Fixtures.ints(c.get("tokens")), r.tokens, "reply tokens");
                assertEquals(c.get("text"), r.text, "reply text");
                assertEquals(r.text, streamed.toString(), "streamed pieces join to the text");
            }));
        }
        for (Map<String, Object> e : Fixtures.list(rec.get("errors"))) {
            tests.add(DynamicTest.dynamicTest("refused: " + name(e), () -> {
                Bundle rt = Shared.bundle(Path.of((String) e.get("dir")));
                ConfigException x = assertThrows(ConfigException.class,
                        () -> rt.generateChat(messages(e), (String) e.get("task"), config(e), null, null));
                assertEquals(((String) e.get("message")).replace("max_tokens", "max_new_tokens"), x.getMessage());
            }));
        }
        return tests.stream();
    }

    private static List<Chat.Message> messages(Map<String, Object> c) {
        List<Chat.Message> out = new ArrayList<>();
        for (Object m : (List<?>) c.get("messages")) {
            List<?> pair = (List<?>) m;
            out.add(new Chat.Message((String) pair.get(0), (String) pair.get(1)));
        }
        return out;
    }

    private static GenerationConfig config(Map<String, Object> c) {
        return GenerationConfig.builder().maxNewTokens(((Long) c.get("max_new_tokens")).intValue()).build();
    }

    private static String name(Map<String, Object> c) {
        List<String> roles = new ArrayList<>();
        messages(c).forEach(m -> roles.add(m.role));
        return Fixtures.label(c.get("task")) + " " + roles + " on " + Path.of((String) c.get("dir")).getFileName();
    }
}
