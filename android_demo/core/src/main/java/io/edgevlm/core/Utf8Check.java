package io.edgevlm.core;

import java.nio.charset.StandardCharsets;

/**
 * Strict UTF-8 validation with CPython's error report ({@code UnicodeDecodeError.reason} and {@code start}), so
 * the Java CLI refuses undecodable arguments and stdin lines with the Python CLI's messages instead of replacing
 * the bytes and answering.
 */
final class Utf8Check {
    /** Where and why the bytes stop being UTF-8. */
    static final class Error {
        final int start;
        final String reason;

        Error(int start, String reason) {
            this.start = start;
            this.reason = reason;
        }
    }

    private Utf8Check() {
    }

    /** The first decoding error of {@code b[0, len)} as CPython reports it, or null for valid UTF-8. */
    static Error first(byte[] b, int len) {
        int i = 0;
        while (i < len) {
            int c = b[i] & 0xff;
            if (c < 0x80) {
                i++;
                continue;
            }
            int need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : -1;
            if (need < 0) {
                return new Error(i, "invalid start byte");
            }
            for (int k = 1; k <= need; k++) {
                if (i + k >= len) {
                    return new Error(i, "unexpected end of data");
                }
                int d = b[i + k] & 0xff;
                int lo = 0x80;
                int hi = 0xBF;
                if (k == 1) { // the second byte's range depends on the first (no overlongs, surrogates, > U+10FFFF)
                    lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
                    hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
                }
                if (d < lo || d > hi) {
                    return new Error(i, "invalid continuation byte");
                }
            }
            i += need + 1;
        }
        return null;
    }

    /** Characters (code points) before byte {@code start}: Python's index of the first undecodable character. */
    static int charsBefore(byte[] b, int start) {
        String prefix = new String(b, 0, start, StandardCharsets.UTF_8);
        return prefix.codePointCount(0, prefix.length());
    }
}
