package io.edgevlm.demo;

import android.app.Activity;
import android.content.Intent;
import android.net.Uri;
import android.os.Bundle;
import android.os.Debug;
import android.os.Handler;
import android.os.Looper;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.EditText;
import android.widget.Spinner;
import android.widget.TextView;
import ai.onnxruntime.OrtEnvironment;
import io.edgevlm.core.Decoder;
import io.edgevlm.core.EdgeVlmException;
import io.edgevlm.core.Generation;
import io.edgevlm.core.GenerationConfig;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Consumer;

/**
 * One screen: load a bundle (installed once into app-private storage from the app's assets or a folder the user
 * picks; {@link BundleCopy}),
 * pick a task (or the plain backbone), run it on typed input with the output streamed as it decodes, and see
 * decode tokens/s, the task-switch cost and memory. All model work runs on one background thread; the
 * {@link io.edgevlm.core.Bundle} is loaded once and each call selects its task adapter. Run starts a
 * {@link Generation} on that thread; Cancel stops it before its next token.
 */
public class MainActivity extends Activity {
    private static final int PICK_FOLDER = 1;
    private static final String PLAIN = "(plain backbone)";
    /** Launch-intent extra: the URL of a bundle's folder to download (overrides R.string.bundle_url). */
    static final String EXTRA_BUNDLE_URL = "bundle_url";

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler ui = new Handler(Looper.getMainLooper());
    private io.edgevlm.core.Bundle bundle;
    private Spinner task;
    private EditText input;
    private Button run;
    private Button cancel;
    private Generation current;
    private TextView output;
    private TextView stats;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        setContentView(R.layout.activity_main);
        task = findViewById(R.id.task);
        input = findViewById(R.id.input);
        run = findViewById(R.id.run);
        output = findViewById(R.id.output);
        stats = findViewById(R.id.stats);
        findViewById(R.id.load_assets).setOnClickListener(v -> load(BundleCopy.assets(getAssets(), "bundle")));
        findViewById(R.id.load_url).setOnClickListener(v -> download());
        findViewById(R.id.load_folder).setOnClickListener(v ->
                startActivityForResult(new Intent(Intent.ACTION_OPEN_DOCUMENT_TREE), PICK_FOLDER));
        cancel = findViewById(R.id.cancel);
        run.setOnClickListener(v -> generate());
        cancel.setOnClickListener(v -> cancel());
        worker.execute(this::checkNatives);
    }

    /** Test seam: sees each piece on the worker thread before it is posted to the screen (null in the app). */
    static volatile Consumer<String> pieceHook;

    /** The first screen says so when ONNX Runtime's natives are missing (an APK built without ORT_AAR). */
    private void checkNatives() {
        try {
            OrtEnvironment.getEnvironment();
        } catch (LinkageError e) { // UnsatisfiedLinkError, or ExceptionInInitializerError around it
            ui.post(() -> stats.setText(getString(R.string.no_natives) + "\n(" + e + ")"));
        }
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        super.onActivityResult(requestCode, resultCode, data);
        if (requestCode == PICK_FOLDER && resultCode == RESULT_OK && data != null) {
            Uri tree = data.getData();
            load(BundleCopy.tree(getContentResolver(), tree));
        }
    }

    @Override
    protected void onDestroy() {
        if (current != null) {
            current.cancel();
        }
        worker.shutdownNow(); // also interrupts a running generation, which stops before its next token
        if (bundle != null) {
            bundle.close();
        }
        super.onDestroy();
    }

    /** The bundle URL: the launch intent's {@link #EXTRA_BUNDLE_URL} (adb: --es bundle_url URL), else the build's. */
    private void download() {
        String url = getIntent().getStringExtra(EXTRA_BUNDLE_URL);
        url = url != null && !url.isEmpty() ? url : getString(R.string.bundle_url);
        if (url.isEmpty()) {
            stats.setText("no bundle URL: set bundle_url in res/values/strings.xml, or start the app with "
                    + "--es " + EXTRA_BUNDLE_URL + " https://…/bundle/");
            return;
        }
        load(new BundleDownload(url));
    }

    private File target() {
        return BundleCopy.installed(getFilesDir());
    }

    /**
     * Installs {@code source} into app-private storage (once: a complete copy with the same manifest is kept) and
     * loads it. A failure is one line on the screen: too little free storage (nothing touched), a failed copy
     * (nothing left behind), or a bundle the core refuses (a kept copy that no longer checks out, e.g. storage
     * corruption, is removed so that the next load installs it afresh instead of failing forever).
     */
    private void load(BundleCopy.Source source) {
        run.setEnabled(false);
        stats.setText("installing and checking the bundle…");
        worker.execute(() -> {
            if (bundle != null) {
                bundle.close();
                bundle = null;
            }
            boolean copied;
            try {
                copied = BundleCopy.install(source, getFilesDir());
            } catch (BundleCopy.StorageShort e) {
                failed(e.getMessage());
                return;
            } catch (IOException | RuntimeException e) {
                failed("cannot install the bundle: " + e.getMessage());
                return;
            }
            try {
                long t0 = System.nanoTime();
                io.edgevlm.core.Bundle b = io.edgevlm.core.Bundle.load(target().toPath());
                double ms = (System.nanoTime() - t0) / 1e6;
                bundle = b;
                List<String> names = new ArrayList<>(b.tasks().keySet());
                names.add(PLAIN);
                ui.post(() -> {
                    task.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item, names));
                    run.setEnabled(true);
                    stats.setText(String.format(Locale.ROOT, "loaded %s backbone, %d task(s) in %.0f ms\n%s",
                            b.manifest.quantization(), b.tasks().size(), ms, memory()));
                });
            } catch (EdgeVlmException e) {
                BundleCopy.clear(target());
                failed("cannot load the bundle: " + e.getMessage() + (copied ? ""
                        : " (the installed copy was removed: load again to install it afresh)"));
            } catch (LinkageError e) {
                ui.post(() -> stats.setText(getString(R.string.no_natives)));
            } catch (RuntimeException | Error e) { // a bug, not a bad bundle: say so instead of "installing…" forever
                failed("cannot load the bundle (internal error): " + e);
            }
        });
    }

    private void failed(String line) {
        ui.post(() -> {
            task.setAdapter(null);
            output.setText("");
            stats.setText(line);
        });
    }

    private void generate() {
        String selected = (String) task.getSelectedItem();
        String name = PLAIN.equals(selected) ? null : selected;
        String text = input.getText().toString();
        output.setText("");
        stats.setText("");
        run.setEnabled(false);
        cancel.setEnabled(true);
        io.edgevlm.core.Bundle b = bundle;
        current = b.start(text, name, GenerationConfig.greedy(), piece -> {
            Consumer<String> hook = pieceHook;
            if (hook != null) {
                hook.accept(piece);
            }
            ui.post(() -> output.append(piece));
        }, worker);
        current.result().whenCompleteAsync((r, e) -> finished(b, text, name, r, e), worker);
    }

    private void cancel() {
        if (current != null) {
            current.cancel();
        }
    }

    /** On the worker once a call ended: its statistics (and the task-switch cost), a cancel note or the error. */
    private void finished(io.edgevlm.core.Bundle b, String text, String name, Decoder.Result r, Throwable e) {
        String line;
        if (e != null) {
            Throwable c = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
            line = "error: " + c.getMessage();
        } else if (r.cancelled) {
            line = String.format(Locale.ROOT, "cancelled after %d new tokens", r.tokens.size());
        } else {
            line = statistics(b, text, name, r);
        }
        ui.post(() -> {
            stats.setText(line);
            cancel.setEnabled(false);
            run.setEnabled(true);
        });
    }

    private static String statistics(io.edgevlm.core.Bundle b, String text, String name, Decoder.Result r) {
        String other = otherTask(b, name);
        try {
            double switchMs = SwitchTimer.measure(b, text, name, other);
            return String.format(Locale.ROOT, "%d prompt + %d new tokens · prefill %.1f ms · decode %.1f tok/s\n"
                            + "task switch (%s→%s): %+.2f ms\n%s%s",
                    r.promptTokens, r.tokens.size(), r.prefillNanos / 1e6, r.tokensPerSecond(),
                    label(other), label(name), switchMs, memory(), r.note == null ? "" : "\nnote: " + r.note);
        } catch (EdgeVlmException e) {
            return "error: " + e.getMessage();
        }
    }

    /** Another task to switch from (the first one that is not {@code name}; the plain backbone otherwise). */
    private static String otherTask(io.edgevlm.core.Bundle b, String name) {
        for (String t : b.tasks().keySet()) {
            if (!t.equals(name)) {
                return t;
            }
        }
        return null;
    }

    private static String label(String task) {
        return task == null ? "plain" : task;
    }

    /** Native heap (ONNX Runtime's allocations), Java heap and the app's total PSS. */
    private static String memory() {
        Debug.MemoryInfo mi = new Debug.MemoryInfo();
        Debug.getMemoryInfo(mi);
        Runtime rt = Runtime.getRuntime();
        return String.format(Locale.ROOT, "memory: native heap %.1f MB · Java heap %.1f MB · PSS %.1f MB",
                Debug.getNativeHeapAllocatedSize() / 1048576.0, (rt.totalMemory() - rt.freeMemory()) / 1048576.0,
                mi.getTotalPss() / 1024.0);
    }
}
