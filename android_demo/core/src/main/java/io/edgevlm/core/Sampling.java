package io.edgevlm.core;

import java.util.Arrays;
import java.util.Comparator;
import java.util.SplittableRandom;

/**
 * Picking a token from one step's logits: greedy (first maximum, as numpy's argmax) or a seeded draw after
 * temperature, top-k and top-p, with the same candidate rules as the Python runtime. A seeded draw repeats in
 * Java, but it is not numpy's random stream, so sampled text differs from Python's for the same seed.
 */
final class Sampling {
    private Sampling() {
    }

    static int argmax(float[] row) {
        int best = 0;
        for (int k = 1; k < row.length; k++) {
            if (row[k] > row[best]) {
                best = k;
            }
        }
        return best;
    }

    static int draw(float[] logits, GenerationConfig cfg, SplittableRandom rng) {
        int v = logits.length;
        double[] z = new double[v];
        for (int k = 0; k < v; k++) {
            z[k] = logits[k] / cfg.temperature;
        }
        Integer[] order = new Integer[v];
        for (int k = 0; k < v; k++) {
            order[k] = k;
        }
        Arrays.sort(order, Comparator.comparingDouble((Integer k) -> -z[k])); // stable: ties keep id order
        int n = cfg.topK > 0 ? Math.min(cfg.topK, v) : v;
        double top = z[order[0]];
        double[] p = new double[n];
        double total = 0;
        for (int k = 0; k < n; k++) {
            p[k] = Math.exp(z[order[k]] - top);
            total += p[k];
        }
        if (cfg.topP < 1.0) { // the smallest best-first set holding top_p of the (top-k) mass
            double cum = 0;
            for (int k = 0; k < n; k++) {
                cum += p[k] / total;
                if (cum >= cfg.topP) {
                    n = k + 1;
                    break;
                }
            }
            total = 0;
            for (int k = 0; k < n; k++) {
                total += p[k];
            }
        }
        double u = rng.nextDouble() * total;
        for (int k = 0; k < n; k++) {
            u -= p[k];
            if (u < 0) {
                return order[k];
            }
        }
        return order[n - 1];
    }
}
