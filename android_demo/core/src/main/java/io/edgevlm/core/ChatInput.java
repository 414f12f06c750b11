package io.edgevlm.core;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The command line's conversations: {@code --message ROLE:TEXT} (repeatable, in order) or {@code --messages FILE}
 * (a JSON list of {@code {"role": ..., "content": ...}} objects as in an OpenAI chat request, or such a request
 * with a {@code messages} list), answered through {@link Bundle#generateChat}. The Python CLI takes conversations
 * only through {@code edgevlm serve}'s {@code /v1/chat/completions}; the messages and refusals are the same.
 */
final class ChatInput {
    private ChatInput() {
    }

    /** {@code ROLE:TEXT} (the role up to the first ':'). */
    static Chat.Message message(String v) {
        int colon = v.indexOf(':');
        if (colon <= 0) {
            throw new ConfigException("argument --message: expected ROLE:TEXT (system, user or assistant), got "
                    + Py.repr(v));
        }
        return new Chat.Message(v.substring(0, colon), v.substring(colon + 1));
    }

    /** The conversation from {@code --message}s or {@code --messages FILE}; both, or either with INPUT, refused. */
    static List<Chat.Message> merge(List<Chat.Message> messages, String file, String input) {
        if (file != null && !messages.isEmpty()) {
            throw new ConfigException("--message and --messages exclude each other");
        }
        List<Chat.Message> out = file != null ? read(file) : messages;
        if (!out.isEmpty() && input != null) {
            throw new ConfigException("--message/--messages and an INPUT exclude each other (the last user message"
                    + " is the input)");
        }
        return out;
    }

    private static List<Chat.Message> read(String file) {
        Object json;
        try {
            json = Json.parse(new String(Files.readAllBytes(Paths.get(file)), StandardCharsets.UTF_8));
        } catch (IOException | RuntimeException e) {
            throw new ConfigException("--messages " + file + ": cannot read it as JSON (" + e.getMessage() + ")");
        }
        if (json instanceof Map && ((Map<?, ?>) json).containsKey("messages")) {
            json = ((Map<?, ?>) json).get("messages");
        }
        if (!(json instanceof List) || ((List<?>) json).isEmpty()) {
            throw new ConfigException("--messages " + file + ": expected a non-empty list of {role, content} objects");
        }
        List<Chat.Message> out = new ArrayList<>();
        List<?> list = (List<?>) json;
        for (int i = 0; i < list.size(); i++) {
            Object m = list.get(i);
            Object role = m instanceof Map ? ((Map<?, ?>) m).get("role") : null;
            Object content = m instanceof Map ? ((Map<?, ?>) m).get("content") : null;
            if (!(role instanceof String) || !(content instanceof String) || ((Map<?, ?>) m).size() != 2) {
                throw new ConfigException("--messages " + file + ": messages[" + i + "] must be an object with a "
                        + "string role and a string content, nothing else, got " + Fields.shortRepr(m));
            }
            out.add(new Chat.Message((String) role, (String) content));
        }
        return out;
    }

    /** Streams the reply to {@code messages} to {@code out}, as {@code Cli} answers one input. */
    static void answer(Bundle rt, List<Chat.Message> messages, String task, GenerationConfig cfg, PrintStream out) {
        rt.generateChat(messages, task, cfg, piece -> {
            out.print(piece);
            out.flush();
        }, null);
        out.println();
    }
}
