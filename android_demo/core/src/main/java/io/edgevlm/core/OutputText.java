package io.edgevlm.core;

import java.util.ArrayList;
import java.util.List;

/**
 * One output as it decodes, as Python's {@code OutputText}: token ids in; text out through incremental UTF-8,
 * stop strings (held back just long enough to see one split across pieces) and the first whitespace trimmed
 * (targets are trained as {@code " " + text}). {@link #done} becomes true at a stop string or after finish.
 */
final class OutputText {
    final List<Integer> tokens = new ArrayList<>();
    boolean done;
    private final ByteLevelBpe tok;
    private final Utf8Stream utf8 = new Utf8Stream();
    private final List<String> stops;
    private final int hold;
    private String pending = "";
    private boolean started;

    OutputText(ByteLevelBpe tok, List<String> stops) {
        this.tok = tok;
        this.stops = stops;
        int longest = 1;
        for (String s : stops) {
            longest = Math.max(longest, s.length());
        }
        hold = longest - 1;
    }

    String push(int token) {
        tokens.add(token);
        return trim(stop(utf8.push(tok.tokenBytes(token)), false));
    }

    /** The text still held back once decoding ended (EOS or length); empty if already done. */
    String finish() {
        if (done) {
            return "";
        }
        String text = stop(utf8.flush(), true);
        done = true;
        return trim(text);
    }

    /** Stop-string matching; {@code last} also releases the held-back text when no stop string was found. */
    private String stop(String text, boolean last) {
        if (stops.isEmpty()) {
            return text;
        }
        pending += text;
        int hit = -1;
        for (String s : stops) {
            int k = pending.indexOf(s);
            if (k >= 0 && (hit < 0 || k < hit)) {
                hit = k;
            }
        }
        if (hit >= 0) {
            String out = pending.substring(0, hit);
            pending = "";
            done = true;
            return out;
        }
        int cut = last ? pending.length() : Math.max(pending.length() - hold, 0);
        if (cut > 0 && cut < pending.length() && Character.isHighSurrogate(pending.charAt(cut - 1))) {
            cut--; // never emit half a surrogate pair (Python counts code points, Java UTF-16 units)
        }
        String out = pending.substring(0, cut);
        pending = pending.substring(cut);
        return out;
    }

    private String trim(String text) {
        if (!started) {
            text = Py.lstrip(text);
            started = !text.isEmpty();
        }
        return text;
    }
}
