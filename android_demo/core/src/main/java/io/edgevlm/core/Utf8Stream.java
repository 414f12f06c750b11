package io.edgevlm.core;

import java.io.ByteArrayOutputStream;

/**
 * Incremental UTF-8 decoding with Python's {@code errors="replace"} semantics: complete characters come out
 * as soon as their last byte arrives, an unfinished one waits, and each maximal invalid subpart becomes one
 * U+FFFD (the Unicode recommended practice CPython follows), so joined pieces equal Python's decode.
 */
public final class Utf8Stream {
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();

    /** Text completed by {@code bytes}. */
    public String push(byte[] bytes) {
        pending.write(bytes, 0, bytes.length);
        return drain(false);
    }

    /** Whatever is left: an incomplete character becomes U+FFFD. */
    public String flush() {
        return drain(true);
    }

    private String drain(boolean fin) {
        byte[] b = pending.toByteArray();
        StringBuilder out = new StringBuilder();
        int i = 0;
        while (i < b.length) {
            int c = b[i] & 0xff;
            int need;
            int lo = 0x80;
            int hi = 0xbf;
            if (c < 0x80) {
                out.append((char) c);
                i++;
                continue;
            } else if (c >= 0xc2 && c <= 0xdf) {
                need = 1;
            } else if (c >= 0xe0 && c <= 0xef) {
                need = 2;
                lo = c == 0xe0 ? 0xa0 : 0x80;
                hi = c == 0xed ? 0x9f : 0xbf;
            } else if (c >= 0xf0 && c <= 0xf4) {
                need = 3;
                lo = c == 0xf0 ? 0x90 : 0x80;
                hi = c == 0xf4 ? 0x8f : 0xbf;
            } else {
                out.append('\ufffd');
                i++;
                continue;
            }
            int cp = c & (0x3f >> need);
            int j = 1;
            boolean bad = false;
            for (; j <= need && i + j < b.length; j++) {
                int x = b[i + j] & 0xff;
                if (x < (j == 1 ? lo : 0x80) || x > (j == 1 ? hi : 0xbf)) {
                    bad = true;
                    break;
                }
                cp = (cp << 6) | (x & 0x3f);
            }
            if (bad) {
                out.append('\ufffd');
                i += j;
            } else if (j <= need) { // ran out of bytes: a valid prefix
                if (!fin) {
                    break;
                }
                out.append('\ufffd');
                i = b.length;
            } else {
                out.appendCodePoint(cp);
                i += need + 1;
            }
        }
        pending.reset();
        pending.write(b, i, b.length - i);
        return out.toString();
    }
}
