package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Cancellation between tokens, without clocks: a callback that cancels on its k-th piece gets exactly k pieces,
 * the result is the uncancelled call's prefix (tokens and text) and no graph run starts after the cancel
 * ({@code decodeSteps == tokens - 1}); the worker-thread handle ({@link Bundle#start}) stops the same way through
 * {@link Generation#cancel()}, the future's own cancel and an interrupt, each while the worker is parked inside
 * the callback (latches, so the order is fixed). Timeouts below only guard against a hang.
 */
class CancelTest {
    private static final long GUARD_S = 120;

    private static Bundle bundle() {
        Map<String, Object> b = Fixtures.map(Fixtures.map(Fixtures.expected().get("bundles")).get("int8"));
        return Shared.bundle(Path.of((String) b.get("dir")));
    }

    private static Map<String, Object> firstCase(Object task) {
        Map<String, Object> b = Fixtures.map(Fixtures.map(Fixtures.expected().get("bundles")).get("int8"));
        for (Map<String, Object> c : Fixtures.list(b.get("cases"))) {
            if (java.util.Objects.equals(c.get("task"), task)) {
                return c;
            }
        }
        throw new AssertionError("no fixture case for task " + task);
    }

    @TestFactory
    Stream<DynamicTest> callbackCancelsAfterKPieces() {
        if (Fixtures.missing()) {
            return Fixtures.skip();
        }
        List<DynamicTest> out = new ArrayList<>();
        for (String task : new String[] {"nlg", "mt", null}) {
            for (int k = 1; k <= 3; k++) {
                int kk = k;
                out.add(DynamicTest.dynamicTest(Fixtures.label(task) + " k=" + k, () -> cancelAt(task, kk)));
            }
        }
        return out.stream();
    }

    private static void cancelAt(String task, int k) {
        Bundle rt = bundle();
        Map<String, Object> c = firstCase(task);
        String input = (String) c.get("input");
        GenerationConfig cfg = Fixtures.config(Fixtures.map(c.get("options")));
        List<String> all = new ArrayList<>();
        Decoder.Result full = rt.generate(input, task, cfg, all::add);
        assertEquals(Fixtures.ints(c.get("tokens")), full.tokens, "uncancelled == Python");
        assertFalse(full.cancelled);
        assertTrue(all.size() > k, "the case streams more than " + k + " pieces: " + all);
        List<String> got = new ArrayList<>();
        AtomicBoolean stop = new AtomicBoolean();
        Decoder.Result r = rt.generate(input, task, cfg, piece -> {
            got.add(piece);
            if (got.size() == k) {
                stop.set(true);
            }
        }, stop::get);
        assertTrue(r.cancelled, "marked cancelled");
        assertEquals(all.subList(0, k), got, "exactly k pieces, the uncancelled call's first k");
        assertEquals(String.join("", got), r.text);
        assertTrue(r.tokens.size() < full.tokens.size(), "stopped early");
        assertEquals(full.tokens.subList(0, r.tokens.size()), r.tokens, "a prefix of the uncancelled tokens");
        assertEquals(r.tokens.size() - 1, r.decodeSteps, "no graph run after the cancel");
    }

    /** A callback that parks the worker on its first piece until {@code go} opens (interrupt: returns at once). */
    private static Consumer<String> parkOnFirst(List<String> got, CountDownLatch first, CountDownLatch go) {
        return piece -> {
            got.add(piece);
            if (got.size() == 1) {
                first.countDown();
                try {
                    go.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt(); // the decode loop sees it before the next token
                }
            }
        };
    }

    @Test
    void handleCancelStopsTheWorker() throws Exception {
        if (Fixtures.missing()) {
            Fixtures.dir(); // skipped with the reason
        }
        Bundle rt = bundle();
        Map<String, Object> c = firstCase("nlg");
        ExecutorService worker = Executors.newSingleThreadExecutor();
        try {
            List<String> got = Collections.synchronizedList(new ArrayList<>());
            CountDownLatch first = new CountDownLatch(1);
            CountDownLatch go = new CountDownLatch(1);
            Generation g = rt.start((String) c.get("input"), "nlg", GenerationConfig.greedy(),
                    parkOnFirst(got, first, go), worker);
            assertTrue(first.await(GUARD_S, TimeUnit.SECONDS));
            g.cancel();
            go.countDown();
            Decoder.Result r = g.result().get(GUARD_S, TimeUnit.SECONDS);
            assertTrue(r.cancelled && g.isCancelRequested());
            assertEquals(List.of(got.get(0)), got, "one piece, then nothing");
            assertEquals(got.get(0), r.text);
            assertEquals(r.tokens.size() - 1, r.decodeSteps, "no graph run after the cancel");
            assertEquals(Fixtures.ints(c.get("tokens")).subList(0, r.tokens.size()), r.tokens);
        } finally {
            worker.shutdownNow();
        }
    }

    @Test
    void futureCancelAndInterruptStopTheWorker() throws Exception {
        if (Fixtures.missing()) {
            Fixtures.dir();
        }
        Bundle rt = bundle();
        String input = (String) firstCase("mt").get("input");
        ExecutorService worker = Executors.newSingleThreadExecutor();
        List<String> got = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch first = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        Generation g = rt.start(input, "mt", GenerationConfig.greedy(), parkOnFirst(got, first, go), worker);
        assertTrue(first.await(GUARD_S, TimeUnit.SECONDS));
        assertTrue(g.result().cancel(true));
        assertTrue(g.isCancelRequested(), "the future's cancel reaches the decode loop");
        assertThrows(CancellationException.class, () -> g.result().get());
        go.countDown();
        worker.submit(() -> { }).get(GUARD_S, TimeUnit.SECONDS); // the single worker finished the call
        assertEquals(1, got.size(), "nothing streamed after the future was cancelled: " + got);

        List<String> got2 = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch first2 = new CountDownLatch(1);
        Generation h = rt.start(input, "mt", GenerationConfig.greedy(), parkOnFirst(got2, first2, new CountDownLatch(1)),
                worker);
        assertTrue(first2.await(GUARD_S, TimeUnit.SECONDS));
        worker.shutdownNow(); // interrupts the parked worker, as an Activity's onDestroy does
        assertTrue(worker.awaitTermination(GUARD_S, TimeUnit.SECONDS));
        Decoder.Result r = h.result().get(GUARD_S, TimeUnit.SECONDS);
        assertTrue(r.cancelled && !h.isCancelRequested(), "stopped by the interrupt");
        assertEquals(1, got2.size());
        assertEquals(r.tokens.size() - 1, r.decodeSteps);
    }

    @Test
    void cancelBeforeStartRunsNothingAndBadInputFailsTheFuture() throws Exception {
        if (Fixtures.missing()) {
            Fixtures.dir();
        }
        Bundle rt = bundle();
        ExecutorService worker = Executors.newSingleThreadExecutor();
        try {
            CountDownLatch hold = new CountDownLatch(1);
            worker.execute(() -> {
                try {
                    hold.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            List<String> got = Collections.synchronizedList(new ArrayList<>());
            Generation g = rt.start("das haus ist klein", "mt", GenerationConfig.greedy(), got::add, worker);
            g.cancel();
            hold.countDown();
            Decoder.Result r = g.result().get(GUARD_S, TimeUnit.SECONDS);
            assertTrue(r.cancelled);
            assertEquals(List.of(), r.tokens);
            assertEquals(List.of(), got);
            assertEquals(0, r.decodeSteps);

            Generation bad = rt.start("x", "nope", GenerationConfig.greedy(), got::add, worker);
            ExecutionException e = assertThrows(ExecutionException.class, () -> bad.result().get(GUARD_S, TimeUnit.SECONDS));
            assertInstanceOf(TaskException.class, e.getCause());
            assertTrue(e.getCause().getMessage().startsWith("unknown task 'nope'"), e.getCause().getMessage());
        } finally {
            worker.shutdownNow();
        }
    }
}
