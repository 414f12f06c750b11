package io.edgevlm.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A conversation as the input the model was made for, every message used or one ConfigException line: the twin of
 * Python's {@code edgevlm.core.chat} (the manifest's {@code tokenizer.chat_turns} record and its rendering) and of
 * the message mapping of {@code edgevlm.apps.serve.chat}, with the same refusal lines.
 * <ul>
 * <li>The plain model (task null) with a {@code chat_turns} record: system/user/assistant rendered exactly as the
 * model's own chat template renders them ({@code start:user + content + user:assistant + ... + user:end}). With
 * only a one-turn {@code chat_template}: one user message, in that template. Without one: one user message, as
 * plain text.</li>
 * <li>A task whose format has turns (template {@code <context> {input} <reply>} plus one more task token, the
 * user's marker: dialogue {@code <persona> {input} <system>} with {@code <user>}): the system message is the
 * context, each user message its marker and text, each assistant message the reply marker and text.</li>
 * <li>Any other task: exactly one user message, its input.</li>
 * </ul>
 * {@code developer} is OpenAI's newer name for {@code system}.
 */
public final class Chat {
    static final List<String> REQUIRED = Collections.unmodifiableList(
            Arrays.asList("start:user", "user:assistant", "assistant:user", "user:end"));
    static final List<String> WITH_SYSTEM = Collections.unmodifiableList(Arrays.asList("start:system", "system:user"));
    private static final int SHOW = 60; // characters of a value quoted in a message (Python's protocol.SHOW)
    private static final Pattern TOKEN = Pattern.compile("<[^<>" + ByteLevelBpe.WS + "]+>");

    private Chat() {
    }

    /** One message of a conversation: {@code role} system (or developer), user or assistant, and its text. */
    public static final class Message {
        public final String role;
        public final String content;

        public Message(String role, String content) {
            this.role = role;
            this.content = content;
        }

        @Override
        public String toString() {
            return role + ": " + content;
        }
    }

    /** What a conversation becomes: the input text, and whether it is one user turn of the chat template. */
    static final class Input {
        final String text;
        final boolean oneTurn;

        Input(String text, boolean oneTurn) {
            this.text = text;
            this.oneTurn = oneTurn;
        }
    }

    /** True when {@code turns} is a well-formed {@code chat_turns} record (Python's {@code check_turns}). */
    static boolean checkTurns(Object turns) {
        if (!(turns instanceof Map)) {
            return false;
        }
        Map<?, ?> m = (Map<?, ?>) turns;
        for (Object v : m.values()) {
            if (!(v instanceof String)) {
                return false;
            }
        }
        Set<Object> keys = new HashSet<>(m.keySet());
        Set<Object> all = new HashSet<>(REQUIRED);
        all.addAll(WITH_SYSTEM);
        return keys.equals(new HashSet<>(REQUIRED)) || keys.equals(all);
    }

    /** The messages checked and normalized (developer -> system), as Python's serve {@code chat.messages}. */
    static List<Message> normalize(List<Message> msgs) {
        if (msgs == null || msgs.isEmpty()) {
            throw new ConfigException("messages must be a non-empty list of {role, content} objects, got "
                    + show(msgs));
        }
        List<Message> out = new ArrayList<>();
        for (int i = 0; i < msgs.size(); i++) {
            Message m = msgs.get(i);
            String role = "developer".equals(m.role) ? "system" : m.role;
            if (!Arrays.asList("system", "user", "assistant").contains(role)) {
                throw new ConfigException("messages[" + i + "].role must be 'system', 'developer', 'user' or "
                        + "'assistant', got " + show(m.role));
            }
            if (m.content == null || Py.strip(m.content).isEmpty()) {
                throw new ConfigException("messages[" + i + "].content must be a non-empty string or list of text "
                        + "parts, got " + show(m.content));
            }
            out.add(new Message(role, m.content));
        }
        return out;
    }

    /** Python's {@code check_roles}: system first if allowed, then user/assistant alternating, ending with user. */
    static void checkRoles(List<Message> msgs, boolean system) {
        List<String> expected = system ? Arrays.asList("system", "user") : Collections.singletonList("user");
        for (int i = 0; i < msgs.size(); i++) {
            String role = msgs.get(i).role;
            if (!expected.contains(role)) {
                List<String> quoted = new ArrayList<>();
                expected.forEach(r -> quoted.add(Py.repr(r)));
                throw new ConfigException("messages[" + i + "].role: expected " + String.join(" or ", quoted)
                        + ", got " + Py.repr(role));
            }
            expected = role.equals("user") ? Collections.singletonList("assistant") : Collections.singletonList("user");
        }
        if (msgs.isEmpty() || !msgs.get(msgs.size() - 1).role.equals("user")) {
            throw new ConfigException("messages: the conversation must end with a user message");
        }
    }

    /** The prompt text of {@code msgs} under {@code turns} (Python's {@code render_conversation}). */
    static String render(Map<String, String> turns, List<Message> msgs) {
        checkRoles(msgs, turns.containsKey("start:system"));
        StringBuilder out = new StringBuilder();
        String prev = "start";
        for (Message m : msgs) {
            out.append(turns.get(prev + ":" + m.role)).append(m.content);
            prev = m.role;
        }
        return out.append(turns.get("user:end")).toString();
    }

    /** The input for {@code msgs} to {@code task} (null: the plain model of {@code manifest}). */
    static Input input(List<Message> msgs, Task task, Manifest manifest) {
        List<Message> norm = normalize(msgs);
        return task == null ? plain(norm, manifest) : new Input(forTask(norm, task), false);
    }

    private static Input plain(List<Message> msgs, Manifest m) {
        if (m.chatTurns != null) {
            return new Input(render(m.chatTurns, msgs), false);
        }
        if (msgs.size() != 1 || !msgs.get(0).role.equals("user")) {
            String why = m.chatTemplate != null ? "records only a one-turn chat template (re-export it)"
                    : "has no chat template";
            throw new ConfigException("messages: model 'base' takes one user message here: the bundle " + why
                    + "; got roles " + Py.repr(roles(msgs)));
        }
        return new Input(msgs.get(0).content, m.chatTemplate != null);
    }

    /** (context, user, reply) markers of a task whose format has turns, else null (Python's turn_markers). */
    static String[] turnMarkers(Task task) {
        int at = task.template.indexOf(Prompts.INPUT_FIELD);
        List<String> lead = tokens(task.template.substring(0, at));
        List<String> trail = tokens(task.template.substring(at + Prompts.INPUT_FIELD.length()));
        List<String> others = new ArrayList<>();
        for (String t : task.specialTokens) {
            if (!lead.contains(t) && !trail.contains(t)) {
                others.add(t);
            }
        }
        return lead.size() == 1 && trail.size() == 1 && others.size() == 1
                ? new String[] {lead.get(0), others.get(0), trail.get(0)} : null;
    }

    private static String forTask(List<Message> msgs, Task task) {
        String[] markers = turnMarkers(task);
        for (int i = 0; i < msgs.size() && markers != null; i++) {
            for (String t : task.specialTokens) {
                if (msgs.get(i).content.contains(t)) {
                    throw new ConfigException("messages[" + i + "].content contains the task token " + Py.repr(t)
                            + ": the roles supply the turn markers");
                }
            }
        }
        if (markers == null) {
            if (msgs.size() != 1 || !msgs.get(0).role.equals("user")) {
                throw new ConfigException("messages: task " + Py.repr(task.name) + " takes one user message (its "
                        + "input), got roles " + Py.repr(roles(msgs)));
            }
            return msgs.get(0).content;
        }
        checkRoles(msgs, true);
        List<String> parts = new ArrayList<>();
        for (Message m : msgs) {
            parts.add(m.role.equals("system") ? m.content
                    : (m.role.equals("user") ? markers[1] : markers[2]) + " " + m.content);
        }
        return String.join(" ", parts);
    }

    private static List<String> tokens(String s) {
        List<String> out = new ArrayList<>();
        for (Matcher k = TOKEN.matcher(s); k.find(); ) {
            out.add(k.group());
        }
        return out;
    }

    private static List<Object> roles(List<Message> msgs) {
        List<Object> out = new ArrayList<>();
        msgs.forEach(m -> out.add(m.role));
        return out;
    }

    /** Python's {@code protocol.show}: repr cut to 60 characters, with the full length. */
    private static String show(Object value) {
        String text = Py.repr(value);
        int n = text.codePointCount(0, text.length());
        return n <= SHOW ? text : text.substring(0, text.offsetByCodePoints(0, SHOW)) + "... (" + n + " characters)";
    }
}
