package io.edgevlm.demo;

import io.edgevlm.core.Bundle;
import io.edgevlm.core.GenerationConfig;
import java.util.Arrays;

/**
 * Task-switch cost as the benchmarks define it: the median time of a 1-token call with {@code task} right after a
 * call with {@code other}, minus the same right after a call with {@code task} itself (a handful of pairs, so it
 * stays quick on a phone). With ONNX Runtime adapters this should be near zero: nothing is reloaded or copied.
 */
final class SwitchTimer {
    private static final int PAIRS = 5;

    private SwitchTimer() {
    }

    static double measure(Bundle b, String text, String task, String other) {
        GenerationConfig one = GenerationConfig.builder().maxNewTokens(1).build();
        double[] same = new double[PAIRS];
        double[] switched = new double[PAIRS];
        for (int k = 0; k < PAIRS; k++) {
            b.generate(text, task, one);
            same[k] = timed(b, text, task, one);
            b.generate(text, other, one);
            switched[k] = timed(b, text, task, one);
        }
        return median(switched) - median(same);
    }

    private static double timed(Bundle b, String text, String task, GenerationConfig cfg) {
        long t = System.nanoTime();
        b.generate(text, task, cfg);
        return (System.nanoTime() - t) / 1e6;
    }

    private static double median(double[] xs) {
        double[] s = xs.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
