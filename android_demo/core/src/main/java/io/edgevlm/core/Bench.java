package io.edgevlm.core;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Warm-up + median harness (not a test): decode speed and task-switch cost of the Java core on one bundle, with
 * the same protocol as {@code android_demo/core/bench_compare.py} uses for the Python runtime, so the two can be
 * compared on the same bundle in the same run.
 *
 * <pre>java -cp target/edgevlm-core.jar io.edgevlm.core.Bench BUNDLE TASK_A TASK_B [tokens=32] [reps=15] [threads=1]
 * java -cp target/edgevlm-core.jar io.edgevlm.core.Bench --prefill BUNDLE TASK [tokens=128] [reps=21] [threads=1]</pre>
 *
 * Decode: per-token time = (median time of a call making {@code tokens} tokens - median of a 1-token call) /
 * (tokens - 1), EOS suppressed so every call makes exactly that many. Task switch: median time of a 1-token call
 * right after a call with the other task minus the same right after a call with the same task. Prints one JSON line.
 */
public final class Bench {
    private Bench() {
    }

    public static void main(String[] args) {
        if (args.length > 0 && args[0].equals("--prefill")) {
            prefill(args);
            return;
        }
        if (args.length > 0 && args[0].equals("--cache")) {
            cache(args);
            return;
        }
        if (args.length < 3) {
            System.err.println("usage: Bench BUNDLE TASK_A TASK_B [tokens] [reps] [threads]");
            System.exit(2);
        }
        int tokens = args.length > 3 ? Integer.parseInt(args[3]) : 32;
        int reps = args.length > 4 ? Integer.parseInt(args[4]) : 15;
        int threads = args.length > 5 ? Integer.parseInt(args[5]) : 1;
        String a = args[1];
        String b = args[2];
        String prompt = "name[Aromi], food[Chinese], area[city centre], near[The Bakery]";
        long t0 = System.nanoTime();
        try (Bundle rt = Bundle.load(Path.of(args[0]), threads, false)) {
            double loadMs = (System.nanoTime() - t0) / 1e6;
            GenerationConfig one = GenerationConfig.builder().maxNewTokens(1).build();
            GenerationConfig many = GenerationConfig.builder().maxNewTokens(tokens).minNewTokens(tokens).build();
            for (int k = 0; k < 40; k++) { // warm-up: JIT (C2 needs thousands of steps), ORT allocator arenas
                rt.generate(prompt, a, many);
                rt.generate(prompt, b, one);
            }
            List<Double> tMany = new ArrayList<>();
            List<Double> tOne = new ArrayList<>();
            List<Double> same = new ArrayList<>();
            List<Double> switched = new ArrayList<>();
            for (int r = 0; r < reps; r++) {
                tMany.add(time(rt, prompt, a, many));
                tOne.add(time(rt, prompt, a, one));
                String x = r % 2 == 0 ? a : b;
                String y = r % 2 == 0 ? b : a;
                rt.generate(prompt, x, one);
                same.add(time(rt, prompt, x, one));
                rt.generate(prompt, x, one);
                switched.add(time(rt, prompt, y, one));
            }
            double perToken = (median(tMany) - median(tOne)) / (tokens - 1);
            System.out.printf(java.util.Locale.ROOT,
                    "{\"engine\": \"java\", \"bundle\": \"%s\", \"threads\": %d, \"tokens\": %d, \"reps\": %d, \"load_ms\": %.1f, "
                            + "\"decode_ms_per_token\": %.4f, \"tokens_per_s\": %.1f, \"one_token_call_ms\": %.3f, "
                            + "\"task_switch_ms\": %.4f, \"heap_mb\": %.1f}%n",
                    args[0], threads, tokens, reps, loadMs, perToken, 1e3 / perToken, median(tOne),
                    median(switched) - median(same), usedHeapMb());
        }
    }

    /**
     * {@code Bench --prefill BUNDLE TASK [tokens=128] [reps=21] [threads=1]}: the prompt's run (1-token calls on a
     * {@code tokens}-id prompt) with the graph option logits_to_keep = 1 and without it (every position's logits),
     * alternated in one JVM after 20 warm-up pairs; medians.
     */
    private static void prefill(String[] args) {
        int tokens = args.length > 3 ? Integer.parseInt(args[3]) : 128;
        int reps = args.length > 4 ? Integer.parseInt(args[4]) : 21;
        int threads = args.length > 5 ? Integer.parseInt(args[5]) : 1;
        try (Bundle rt = Bundle.load(Path.of(args[1]), threads, false)) {
            List<Integer> ids = new ArrayList<>();
            for (int k = 0; k < tokens; k++) {
                ids.add((k * 37 + 11) % rt.graph.vocabSize); // ordinary ids; the content does not change the cost
            }
            GenerationConfig one = GenerationConfig.builder().maxNewTokens(1).build();
            List<Double> kept = new ArrayList<>();
            List<Double> all = new ArrayList<>();
            for (int r = -20; r < reps; r++) {
                double a = timeIds(rt, ids, args[2], one, true);
                double b = timeIds(rt, ids, args[2], one, false);
                if (r >= 0) {
                    kept.add(a);
                    all.add(b);
                }
            }
            int n = rt.generateTokens(ids, args[2], one).promptTokens;
            System.out.printf(java.util.Locale.ROOT, "{\"engine\": \"java\", \"bundle\": \"%s\", \"threads\": %d, "
                    + "\"prompt_tokens\": %d, \"reps\": %d, \"keeps_logits\": %b, \"prefill_ms_last_only\": %.3f, "
                    + "\"prefill_ms_all_positions\": %.3f, \"ratio\": %.3f}%n", args[1], threads, n, reps,
                    rt.graph.keepsLogits, median(kept), median(all), median(kept) / median(all));
        }
    }

    /**
     * {@code Bench --cache BUNDLE TASK [tokens=256] [reps=15] [threads=1]}: decode tokens/s (steps after the first
     * token over their time, EOS ignored) of {@code tokens}-token calls after a 16-id prompt, the shared key/value
     * cache and the concat way alternated in one JVM after 10 warm-up pairs; medians. Needs a kv_cache: shared bundle.
     */
    private static void cache(String[] args) {
        int tokens = args.length > 3 ? Integer.parseInt(args[3]) : 256;
        int reps = args.length > 4 ? Integer.parseInt(args[4]) : 15;
        int threads = args.length > 5 ? Integer.parseInt(args[5]) : 1;
        try (Bundle rt = Bundle.load(Path.of(args[1]), threads, false)) {
            List<Integer> ids = new ArrayList<>();
            for (int k = 0; k < 16; k++) {
                ids.add((k * 37 + 11) % rt.graph.vocabSize);
            }
            Task task = rt.task(args[2]);
            GenerationConfig cfg = GenerationConfig.builder().maxNewTokens(tokens).build();
            List<Double> shared = new ArrayList<>();
            List<Double> concat = new ArrayList<>();
            for (int r = -10; r < reps; r++) {
                double a = rt.decoder(true).run(ids, null, task, null, cfg, rt.tokenizer, null, null).tokensPerSecond();
                double b = rt.decoder(false).run(ids, null, task, null, cfg, rt.tokenizer, null, null).tokensPerSecond();
                if (r >= 0) {
                    shared.add(a);
                    concat.add(b);
                }
            }
            System.out.printf(java.util.Locale.ROOT, "{\"engine\": \"java\", \"bundle\": \"%s\", \"threads\": %d, "
                    + "\"tokens\": %d, \"reps\": %d, \"shared_tokens_per_s\": %.1f, \"concat_tokens_per_s\": %.1f, "
                    + "\"ratio\": %.3f}%n", args[1], threads, tokens, reps, median(shared), median(concat),
                    median(shared) / median(concat));
        } catch (ai.onnxruntime.OrtException e) {
            throw new EdgeVlmException(args[1] + ": ONNX Runtime failed to run the graph (" + e.getMessage() + ")", e);
        }
    }

    private static double timeIds(Bundle rt, List<Integer> ids, String task, GenerationConfig cfg, boolean options) {
        long t = System.nanoTime();
        rt.generateTokens(ids, task, cfg, options);
        return (System.nanoTime() - t) / 1e6;
    }

    private static double time(Bundle rt, String prompt, String task, GenerationConfig cfg) {
        long t = System.nanoTime();
        rt.generate(prompt, task, cfg);
        return (System.nanoTime() - t) / 1e6;
    }

    static double median(List<Double> xs) {
        List<Double> s = new ArrayList<>(xs);
        Collections.sort(s);
        int n = s.size();
        return n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
    }

    private static double usedHeapMb() {
        Runtime r = Runtime.getRuntime();
        return (r.totalMemory() - r.freeMemory()) / 1048576.0;
    }
}
