package io.edgevlm.core;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import java.util.function.Function;

/**
 * A generation running on a worker ({@link Bundle#start}): a cancel handle and the future result. Cancelling
 * stops the decode loop between tokens (the current graph run finishes, no further one starts), so the handle is
 * safe to use from a UI thread; the future then completes normally with a {@link Decoder.Result} whose
 * {@code cancelled} is true and whose text is what the callback received. Cancelling the future itself
 * ({@code result().cancel(..)}) or interrupting the worker thread (e.g. {@code ExecutorService.shutdownNow()})
 * stops the loop the same way.
 */
public final class Generation {
    private final AtomicBoolean cancel = new AtomicBoolean();
    private final CompletableFuture<Decoder.Result> result = new CompletableFuture<>();

    private Generation() {
        result.whenComplete((r, e) -> {
            if (result.isCancelled()) {
                cancel.set(true);
            }
        });
    }

    /** Runs {@code call} (given the stop condition) on {@code executor}; the handle exists before it starts. */
    static Generation start(Executor executor, Function<BooleanSupplier, Decoder.Result> call) {
        Generation g = new Generation();
        BooleanSupplier stop = () -> g.cancel.get() || Thread.currentThread().isInterrupted();
        executor.execute(() -> {
            try {
                g.result.complete(call.apply(stop));
            } catch (RuntimeException | Error e) {
                g.result.completeExceptionally(e);
            }
        });
        return g;
    }

    /** Asks the decode to stop before its next token; any thread, any number of times, no-op once finished. */
    public void cancel() {
        cancel.set(true);
    }

    /** Whether {@link #cancel()} was called (the call may still have finished on its own). */
    public boolean isCancelRequested() {
        return cancel.get();
    }

    /** The call's outcome: its result, or the exception that ended it (bad input, ONNX Runtime failure). */
    public CompletableFuture<Decoder.Result> result() {
        return result;
    }
}
