package io.edgevlm.core;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Prompt encoding and the truncation policy, line for line as Python's {@code edgevlm.core.prompts}
 * ({@code edgevlm/core/prompts.py}: {@code encode_prompt}, {@code build_prompt}): task tokens become
 * {@code vocab_size + k}; an over-long prompt keeps every task token, the newest turn, the beginning of the
 * context (at most {@code max_source_tokens}) and as many older exchanges as fit, newest first.
 */
public final class Prompts {
    public static final String INPUT_FIELD = "{input}";
    private static final Pattern TEMPLATE_TOKEN = Pattern.compile("<[^<>" + ByteLevelBpe.WS + "]+>");

    private Prompts() {
    }

    /** One piece of text: a task token or ordinary text. */
    static final class Piece {
        final boolean special;
        final String text;

        Piece(boolean special, String text) {
            this.special = special;
            this.text = text;
        }
    }

    /** Null when {@code template} has exactly one {input} and only known task tokens, else the problem. */
    public static String checkTemplate(String template, List<String> specials) {
        int count = 0;
        for (int k = template.indexOf(INPUT_FIELD); k >= 0; k = template.indexOf(INPUT_FIELD, k + INPUT_FIELD.length())) {
            count++;
        }
        if (count != 1) {
            return "prompt template " + Py.repr(template) + " must contain " + INPUT_FIELD + " exactly once";
        }
        Matcher m = TEMPLATE_TOKEN.matcher(template);
        while (m.find()) {
            if (!specials.contains(m.group())) {
                return "prompt template uses " + Py.repr(m.group()) + ", not among the task's special tokens "
                        + Py.repr(specials);
            }
        }
        return null;
    }

    /** Splits text at task tokens (longest first at each position), dropping empty pieces. */
    static List<Piece> splitSpecial(String text, List<String> specials) {
        List<Piece> out = new ArrayList<>();
        if (specials.isEmpty()) {
            out.add(new Piece(false, text));
            return out;
        }
        List<String> order = new ArrayList<>(specials);
        order.sort((a, b) -> b.length() - a.length()); // stable, like Python's sorted(key=len, reverse=True)
        int start = 0;
        int k = 0;
        while (k < text.length()) {
            String hit = null;
            for (String t : order) {
                if (text.startsWith(t, k)) {
                    hit = t;
                    break;
                }
            }
            if (hit == null) {
                k++;
                continue;
            }
            if (k > start) {
                out.add(new Piece(false, text.substring(start, k)));
            }
            out.add(new Piece(true, hit));
            k += hit.length();
            start = k;
        }
        if (start < text.length()) {
            out.add(new Piece(false, text.substring(start)));
        }
        return out;
    }

    /** Ids of {@code text}: task tokens as {@code vocab + k}, each text piece stripped and encoded after a space. */
    public static List<Integer> encodeSegments(ByteLevelBpe tok, String text, List<String> specials, int vocab) {
        List<Integer> ids = new ArrayList<>();
        for (Piece p : splitSpecial(text, specials)) {
            if (p.special) {
                ids.add(vocab + specials.indexOf(p.text));
            } else {
                String s = Py.strip(p.text);
                if (!s.isEmpty()) {
                    ids.addAll(tok.encode(" " + s));
                }
            }
        }
        return ids;
    }

    /** {@code text} wrapped in {@code template} (null: plain text), encoded. */
    public static List<Integer> encodePrompt(ByteLevelBpe tok, String template, String text, List<String> specials, int vocab) {
        return encodeSegments(tok, template != null && !template.isEmpty() ? template.replace(INPUT_FIELD, text) : text,
                specials, vocab);
    }

    /** At most {@code budget} ids: the oldest ordinary tokens go first, never a task token. */
    public static List<Integer> truncateLeft(List<Integer> ids, int budget, int vocab) {
        int excess = ids.size() - budget;
        if (excess <= 0) {
            return new ArrayList<>(ids);
        }
        int nSpecial = nSpecial(ids, vocab);
        if (nSpecial > budget) {
            throw new ConfigException("prompt has " + nSpecial + " task tokens, more than the budget of " + budget);
        }
        List<Integer> out = new ArrayList<>();
        for (int t : ids) {
            if (excess > 0 && t < vocab) {
                excess--;
                continue;
            }
            out.add(t);
        }
        return out;
    }

    static int nSpecial(List<Integer> ids, int vocab) {
        int n = 0;
        for (int t : ids) {
            n += t >= vocab ? 1 : 0;
        }
        return n;
    }

    /** Python's {@code split_turns}: [context, exchange...] of a source. */
    static List<String> splitTurns(String text, List<String> specials) {
        List<Piece> pieces = splitSpecial(text, specials);
        int first = 0;
        while (first < pieces.size() && !pieces.get(first).special) {
            first++;
        }
        StringBuilder context = new StringBuilder();
        for (int k = 0; k < first; k++) {
            context.append(pieces.get(k).text);
        }
        List<String> segs = new ArrayList<>();
        for (int k = first; k < pieces.size(); k++) {
            Piece p = pieces.get(k);
            if (p.special) {
                segs.add(p.text);
            } else {
                segs.set(segs.size() - 1, segs.get(segs.size() - 1) + " " + Py.strip(p.text));
            }
        }
        List<String> out = new ArrayList<>();
        out.add(context.toString());
        if (segs.isEmpty()) {
            return out;
        }
        String opener = segs.get(segs.size() - 1).split(" ", 2)[0];
        List<String> exchanges = new ArrayList<>();
        for (String seg : segs) {
            if (exchanges.isEmpty() || seg.split(" ", 2)[0].equals(opener)) {
                exchanges.add(seg);
            } else {
                exchanges.set(exchanges.size() - 1, exchanges.get(exchanges.size() - 1) + " " + seg);
            }
        }
        out.addAll(exchanges);
        return out;
    }

    /** All task tokens of {@code ids} and its first {@code nOrdinary} ordinary tokens. */
    static List<Integer> keepHead(List<Integer> ids, int nOrdinary, int vocab) {
        List<Integer> out = new ArrayList<>();
        int left = nOrdinary;
        for (int t : ids) {
            if (t >= vocab) {
                out.add(t);
            } else if (left > 0) {
                out.add(t);
                left--;
            }
        }
        return out;
    }

    /**
     * Python's {@code build_prompt}: ids for {@code source} under {@code template} in at most {@code budget} ids.
     * {@code maxContext} (the task's max_source_tokens) may be null.
     */
    public static List<Integer> buildPrompt(ByteLevelBpe tok, String template, List<String> specials, Integer maxContext,
                                            String source, int vocab, int budget) {
        int at = template.indexOf(INPUT_FIELD);
        String prefix = template.substring(0, at);
        String suffix = template.substring(at + INPUT_FIELD.length());
        List<String> split = splitTurns(source, specials);
        List<Integer> context = encodeSegments(tok, prefix + split.get(0), specials, vocab);
        List<List<Integer>> turns = new ArrayList<>();
        for (String x : split.subList(1, split.size())) {
            turns.add(encodeSegments(tok, x, specials, vocab));
        }
        List<Integer> tail = encodeSegments(tok, suffix, specials, vocab);
        return fit(context, turns, tail, budget, vocab, maxContext);
    }

    private static List<Integer> fit(List<Integer> ctx, List<List<Integer>> turns, List<Integer> tail, int budget,
                                     int vocab, Integer maxContext) {
        List<Integer> newest = turns.isEmpty() ? List.of() : turns.get(turns.size() - 1);
        int ctxSpecial = nSpecial(ctx, vocab);
        int fixed = ctxSpecial + tail.size();
        if (fixed + nSpecial(newest, vocab) > budget) {
            throw new ConfigException("prompt budget of " + budget + " tokens cannot hold the task tokens of the prompt");
        }
        newest = truncateLeft(newest, budget - fixed, vocab);
        int room = budget - fixed - newest.size();
        int ctxLen = ctx.size() - ctxSpecial;
        int maxCtx = maxContext == null || maxContext == 0 ? ctxLen : maxContext;
        List<Integer> context = keepHead(ctx, Math.min(Math.min(ctxLen, room), maxCtx), vocab);
        room -= context.size() - ctxSpecial;
        List<List<Integer>> kept = new ArrayList<>();
        for (int k = turns.size() - 2; k >= 0; k--) {
            if (turns.get(k).size() > room) {
                break;
            }
            kept.add(0, turns.get(k));
            room -= turns.get(k).size();
        }
        List<Integer> out = new ArrayList<>(context);
        kept.forEach(out::addAll);
        out.addAll(newest);
        out.addAll(tail);
        return out;
    }
}
