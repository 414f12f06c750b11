package io.edgevlm.core;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * Checked access to one JSON object's fields (Python's {@code core.manifest._Fields}): a missing field fails
 * as {@code WHERE: PATH: missing}, a bad one as {@code WHERE: PATH: expected WHAT, got REPR} (repr cut to 60
 * characters like Python's {@code _short}), so Java and Python refuse a manifest with the same line.
 */
final class Fields {
    static final String POS = "a positive integer";
    private static final Object MISSING = new Object();

    final Map<String, Object> d;
    final String where;
    final String path;

    @SuppressWarnings("unchecked")
    Fields(Object obj, String where, String path) {
        if (!(obj instanceof Map)) {
            throw fail(where, path, "an object", obj);
        }
        this.d = (Map<String, Object>) obj;
        this.where = where;
        this.path = path;
    }

    static BundleException fail(String where, String path, String expected, Object got) {
        String tail = got == MISSING ? "missing" : "expected " + expected + ", got " + shortRepr(got);
        return new BundleException(path.isEmpty() ? where + ": " + tail : where + ": " + path + ": " + tail);
    }

    /** Python's {@code _short}: repr, at most 60 code points (57 + "..."). */
    static String shortRepr(Object v) {
        String r = Py.repr(v);
        int n = r.codePointCount(0, r.length());
        return n <= 60 ? r : r.substring(0, r.offsetByCodePoints(0, 57)) + "...";
    }

    String name(String key) {
        return path.isEmpty() ? key : path + "." + key;
    }

    /** The required field {@code key} if {@code check} accepts it. */
    Object get(String key, Predicate<Object> check, String expected) {
        return get(key, check, expected, MISSING);
    }

    /** The field {@code key} if {@code check} accepts it, {@code dflt} when absent. */
    Object get(String key, Predicate<Object> check, String expected, Object dflt) {
        if (!d.containsKey(key)) {
            if (dflt == MISSING) {
                throw fail(where, name(key), expected, MISSING);
            }
            return dflt;
        }
        Object v = d.get(key);
        if (!check.test(v)) {
            throw fail(where, name(key), expected, v);
        }
        return v;
    }

    /** The required nested object {@code key}. */
    Fields sub(String key) {
        return new Fields(get(key, v -> true, "an object"), where, name(key));
    }

    // -- Python's value checks (JSON numbers arrive as Long or Double, booleans are never integers) ----

    static boolean isInt(Object v) {
        return v instanceof Long;
    }

    static boolean pos(Object v) {
        return v instanceof Long && (Long) v > 0;
    }

    static boolean str(Object v) {
        return v instanceof String && !((String) v).isEmpty();
    }

    static Predicate<Object> opt(Predicate<Object> check) {
        return v -> v == null || check.test(v);
    }

    static Predicate<Object> token(long vocabSize) {
        return v -> v instanceof Long && (Long) v >= 0 && (Long) v < vocabSize;
    }

    static Predicate<Object> oneOf(List<String> values) {
        return values::contains;
    }

    /** A non-empty list of distinct non-empty strings. */
    static boolean strList(Object v) {
        return v instanceof List && !((List<?>) v).isEmpty() && ((List<?>) v).stream().allMatch(Fields::str)
                && new HashSet<>((List<?>) v).size() == ((List<?>) v).size();
    }

    /** A number in [0, 100] (int or float, not bool). */
    static boolean share(Object v) {
        double x = v instanceof Long ? (Long) v : v instanceof Double ? (Double) v : Double.NaN;
        return x >= 0 && x <= 100;
    }

    /** Python's {@code re.match("^X$", s)}: {@code $} also matches before one final newline. */
    static boolean pyFullMatch(String regex, Object s) {
        return s instanceof String && ((String) s).matches("(?:" + regex + ")\n?");
    }

    /** Python's {@code ==} for JSON values: 1 == 1.0 == True, lists element-wise. */
    static boolean pyEquals(Object a, Object b) {
        if (a instanceof List && b instanceof List) {
            List<?> x = (List<?>) a;
            List<?> y = (List<?>) b;
            if (x.size() != y.size()) {
                return false;
            }
            for (int k = 0; k < x.size(); k++) {
                if (!pyEquals(x.get(k), y.get(k))) {
                    return false;
                }
            }
            return true;
        }
        Double p = number(a);
        Double q = number(b);
        return p != null && q != null ? p.doubleValue() == q.doubleValue() : java.util.Objects.equals(a, b);
    }

    private static Double number(Object v) {
        return v instanceof Long ? (double) (Long) v : v instanceof Double ? (Double) v
                : v instanceof Boolean ? ((Boolean) v ? 1.0 : 0.0) : null;
    }
}
