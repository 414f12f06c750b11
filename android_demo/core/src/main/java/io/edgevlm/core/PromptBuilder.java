package io.edgevlm.core;

import java.util.List;

/**
 * The runtime's prompt step, as Python's {@code Runtime._encode/_fit/_budget}: text is wrapped in the task's
 * template and cut by {@link Prompts#buildPrompt} within {@code n_positions - max_new_tokens} tokens (the plain
 * backbone and already-encoded prompts keep their task tokens and most recent ids); a cut is reported in
 * {@link Prompt#note}, worded as Python's InputTruncated warning.
 */
public final class PromptBuilder {
    private PromptBuilder() {
    }

    /** Prompt ids and, when the input was cut, the note saying so (else null). */
    public static final class Prompt {
        public final List<Integer> ids;
        public final String note;

        Prompt(List<Integer> ids, String note) {
            this.ids = List.copyOf(ids);
            this.note = note;
        }
    }

    static Prompt encode(ByteLevelBpe tok, GraphInfo g, Task task, String text, int maxNew) {
        return encode(tok, g, task, text, maxNew, null);
    }

    /** With {@code chatTemplate} (task null): the text is the user turn of the model's chat template. */
    static Prompt encode(ByteLevelBpe tok, GraphInfo g, Task task, String text, int maxNew, String chatTemplate) {
        if (text == null) {
            throw new ConfigException("input must be a string, got NoneType");
        }
        if (Py.strip(text.codePoints().filter(c -> Character.getType(c) != Character.FORMAT)
                .collect(StringBuilder::new, StringBuilder::appendCodePoint, StringBuilder::append).toString()).isEmpty()) {
            throw new ConfigException("input is empty"); // whitespace or zero-width (format) characters only
        }
        int v = g.vocabSize;
        String template = chatTemplate != null ? chatTemplate : task != null ? task.template : null;
        List<Integer> ids = Prompts.encodePrompt(tok, template, text, task != null ? task.specialTokens : List.of(), v);
        if (task == null) {
            return fit(ids, null, maxNew, g);
        }
        List<Integer> kept = Prompts.buildPrompt(tok, task.template, task.specialTokens, task.maxSourceTokens, text, v,
                budget(ids, maxNew, g));
        String note = kept.size() < ids.size()
                ? "input has " + ids.size() + " tokens; kept " + kept.size() + ": every task token, the newest turn and the "
                + "start of the context, as in training (n_positions=" + g.nPositions + ", max_new_tokens=" + maxNew + ")"
                : null;
        return new Prompt(kept, note);
    }

    /** Prompt tokens that fit beside {@code maxNew}; ConfigException when not even the task tokens fit. */
    static int budget(List<Integer> ids, int maxNew, GraphInfo g) {
        int nSpecial = Prompts.nSpecial(ids, g.vocabSize);
        int budget = g.nPositions - maxNew;
        if (budget < nSpecial + 1) {
            throw new ConfigException("max_new_tokens=" + maxNew + " is beyond the context: the backbone holds "
                    + "n_positions=" + g.nPositions + " tokens and this prompt needs at least " + (nSpecial + 1));
        }
        return budget;
    }

    /** Already-encoded ids cut (truncate_left) to the budget and the task's max_source_tokens plus its task tokens. */
    static Prompt fit(List<Integer> ids, Task task, int maxNew, GraphInfo g) {
        int budget = budget(ids, maxNew, g);
        if (task != null && task.maxSourceTokens != null && task.maxSourceTokens > 0) {
            budget = Math.min(budget, task.maxSourceTokens + task.specialTokens.size());
        }
        if (ids.size() <= budget) {
            return new Prompt(ids, null);
        }
        String note = "input has " + ids.size() + " tokens; kept the last " + budget + " and every task token "
                + "(n_positions=" + g.nPositions + ", max_new_tokens=" + maxNew + ")";
        return new Prompt(Prompts.truncateLeft(ids, budget, g.vocabSize), note);
    }
}
