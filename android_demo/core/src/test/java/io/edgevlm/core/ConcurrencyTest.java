package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * 4 threads on one bundle, each call with another task (nlg, mt, plain) in a shuffled order: every output equals
 * the serial one, and the serial ones equal Python's. Shows that the per-call RunOptions select the adapter per
 * call and that calls share no mutable state.
 */
class ConcurrencyTest {
    @Test
    void fourThreadsMixedTasksEqualSerial() throws Exception {
        for (Object spec : Fixtures.map(Fixtures.expected().get("bundles")).values()) {
            Map<String, Object> b = Fixtures.map(spec);
            Bundle rt = Shared.bundle(Path.of((String) b.get("dir")));
            List<Map<String, Object>> cases = Fixtures.list(b.get("cases"));
            List<List<Integer>> serial = new ArrayList<>();
            for (Map<String, Object> c : cases) {
                serial.add(run(rt, c));
                assertEquals(Fixtures.ints(c.get("tokens")), serial.get(serial.size() - 1), "serial == Python");
            }
            int rounds = 3;
            AtomicInteger running = new AtomicInteger();
            AtomicInteger overlap = new AtomicInteger(); // most generate calls seen in flight at once
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<List<Integer>>> futures = new ArrayList<>();
                List<Integer> which = new ArrayList<>();
                for (int r = 0; r < rounds; r++) {
                    for (int k = 0; k < cases.size(); k++) {
                        int idx = (k * 7 + r * 3) % cases.size(); // interleave tasks differently each round
                        which.add(idx);
                        futures.add(pool.submit(() -> {
                            overlap.accumulateAndGet(running.incrementAndGet(), Math::max);
                            try {
                                return run(rt, cases.get(idx));
                            } finally {
                                running.decrementAndGet();
                            }
                        }));
                    }
                }
                for (int k = 0; k < futures.size(); k++) {
                    assertEquals(serial.get(which.get(k)), futures.get(k).get(), "call " + k + " (case " + which.get(k) + ")");
                }
                assertTrue(overlap.get() >= 2, "calls really overlapped: at most " + overlap.get() + " in flight");
            } finally {
                pool.shutdownNow();
            }
        }
    }

    private static List<Integer> run(Bundle rt, Map<String, Object> c) {
        return rt.generate((String) c.get("input"), (String) c.get("task"), Fixtures.config(Fixtures.map(c.get("options")))).tokens;
    }
}
