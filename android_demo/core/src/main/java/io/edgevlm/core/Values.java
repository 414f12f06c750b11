package io.edgevlm.core;

import java.math.BigDecimal;
import java.math.MathContext;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Python's {@code identity.check_values} for float32 adapter tensors: NaN, infinity or a magnitude over
 * {@link #MAX_ABS_WEIGHT} refused with the tensor's name, what was found and how many values hold it.
 */
final class Values {
    static final double MAX_ABS_WEIGHT = 1e4; // trained adapter/task-embedding values are < 10
    static final String REEXPORT = "re-export the bundle with this edgevlm ('edgevlm export ... --force')";

    private Values() {
    }

    /** {@code raw}: little-endian float32 values; {@code where}: "FILE: tensor NAME". */
    static void check(String where, byte[] raw) {
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int n = raw.length / 4;
        int nonFinite = 0;
        int huge = 0;
        float firstNonFinite = 0;
        float firstHuge = 0;
        for (int k = 0; k < n; k++) {
            float v = b.getFloat(4 * k);
            if (!Float.isFinite(v)) {
                firstNonFinite = nonFinite++ == 0 ? v : firstNonFinite;
            } else if (Math.abs(v) > MAX_ABS_WEIGHT) {
                firstHuge = huge++ == 0 ? v : firstHuge;
            }
        }
        if (nonFinite == 0 && huge == 0) {
            return;
        }
        float v = nonFinite > 0 ? firstNonFinite : firstHuge;
        String what = Float.isNaN(v) ? "NaN" : Float.isInfinite(v) ? "infinity" : "the absurd value " + g3(v);
        throw new BundleException(where + " holds " + what + " (" + (nonFinite > 0 ? nonFinite : huge) + " of " + n
                + " values); refused");
    }

    /** Python's {@code format(v, ".3g")} for a finite value whose magnitude is over 1e4 (always an exponent). */
    static String g3(double v) {
        BigDecimal d = new BigDecimal(v).round(new MathContext(3));
        int exp = d.precision() - d.scale() - 1;
        String digits = d.unscaledValue().abs().toString().replaceAll("0+$", "");
        String mant = digits.length() > 1 ? digits.charAt(0) + "." + digits.substring(1) : digits;
        if (exp >= -4 && exp < 3) {
            return new BigDecimal(v).round(new MathContext(3)).stripTrailingZeros().toPlainString();
        }
        return (v < 0 ? "-" : "") + mant + "e" + (exp < 0 ? "-" : "+") + String.format("%02d", Math.abs(exp));
    }
}
