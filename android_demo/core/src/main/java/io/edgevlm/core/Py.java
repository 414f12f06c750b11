package io.edgevlm.core;

import java.util.List;
import java.util.Map;

/**
 * Python-compatible helpers, so error messages and text handling match the Python runtime character for
 * character: {@code repr()}, {@code str.isspace()}, {@code str.strip()}.
 */
public final class Py {
    private Py() {
    }

    /** Python's {@code repr()} of a JSON value (str, int, float, bool, None, list, dict). */
    public static String repr(Object v) {
        if (v == null) {
            return "None";
        }
        if (v instanceof Boolean) {
            return (Boolean) v ? "True" : "False";
        }
        if (v instanceof String) {
            return reprString((String) v);
        }
        if (v instanceof Double) {
            double d = (Double) v;
            if (Double.isNaN(d)) {
                return "nan";
            }
            if (Double.isInfinite(d)) {
                return d > 0 ? "inf" : "-inf";
            }
            return d == Math.rint(d) && Math.abs(d) < 1e16 ? String.format("%.1f", d) : Double.toString(d);
        }
        if (v instanceof List) {
            StringBuilder b = new StringBuilder("[");
            for (Object o : (List<?>) v) {
                b.append(b.length() > 1 ? ", " : "").append(repr(o));
            }
            return b.append(']').toString();
        }
        if (v instanceof Map) {
            StringBuilder b = new StringBuilder("{");
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                b.append(b.length() > 1 ? ", " : "").append(repr(e.getKey())).append(": ").append(repr(e.getValue()));
            }
            return b.append('}').toString();
        }
        return v.toString();
    }

    private static String reprString(String s) {
        char q = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        StringBuilder b = new StringBuilder().append(q);
        for (int k = 0; k < s.length(); ) {
            int c = s.codePointAt(k);
            k += Character.charCount(c);
            if (c == q || c == '\\') {
                b.append('\\').appendCodePoint(c);
            } else if (c == '\n') {
                b.append("\\n");
            } else if (c == '\r') {
                b.append("\\r");
            } else if (c == '\t') {
                b.append("\\t");
            } else if (c < 0x20 || c == 0x7f) {
                b.append(String.format("\\x%02x", c));
            } else {
                b.appendCodePoint(c);
            }
        }
        return b.append(q).toString();
    }

    /** Python's {@code str.isspace()} for one code point (Unicode White_Space, as CPython defines it). */
    public static boolean isSpace(int c) {
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680
                || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f
                || c == 0x3000;
    }

    /** Python's {@code str.strip()}. */
    public static String strip(String s) {
        return rstrip(lstrip(s));
    }

    /** Python's {@code str.lstrip()}. */
    public static String lstrip(String s) {
        int k = 0;
        while (k < s.length() && isSpace(s.codePointAt(k))) {
            k += Character.charCount(s.codePointAt(k));
        }
        return s.substring(k);
    }

    /** Python's {@code str.rstrip()}. */
    public static String rstrip(String s) {
        int k = s.length();
        while (k > 0 && isSpace(s.codePointBefore(k))) {
            k -= Character.charCount(s.codePointBefore(k));
        }
        return s.substring(0, k);
    }
}
