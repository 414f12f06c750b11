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
import io.edgevlm.core.Decoder;
import io.edgevlm.core.EdgeVlmException;
import io.edgevlm.core.GenerationConfig;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * One screen: load a bundle (copied from the app's assets or a folder the user picks into internal storage),
 * pick a task (or the plain backbone), run it on typed input with the output streamed as it decodes, and see
 * decode tokens/s, the task-switch cost and memory. All model work runs on one background thread; the
 * {@link io.edgevlm.core.Bundle} is loaded once and each call selects its task adapter.
 */
public class MainActivity extends Activity {
    private static final int PICK_FOLDER = 1;
    private static final String PLAIN = "(plain backbone)";

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler ui = new Handler(Looper.getMainLooper());
    private io.edgevlm.core.Bundle bundle;
    private Spinner task;
    private EditText input;
    private Button run;
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
        findViewById(R.id.load_assets).setOnClickListener(v -> load(() -> BundleCopy.fromAssets(getAssets(), "bundle", target())));
        findViewById(R.id.load_folder).setOnClickListener(v ->
                startActivityForResult(new Intent(Intent.ACTION_OPEN_DOCUMENT_TREE), PICK_FOLDER));
        run.setOnClickListener(v -> generate());
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        super.onActivityResult(requestCode, resultCode, data);
        if (requestCode == PICK_FOLDER && resultCode == RESULT_OK && data != null) {
            Uri tree = data.getData();
            load(() -> BundleCopy.fromTree(getContentResolver(), tree, target()));
        }
    }

    @Override
    protected void onDestroy() {
        worker.shutdownNow();
        if (bundle != null) {
            bundle.close();
        }
        super.onDestroy();
    }

    private File target() {
        return new File(getFilesDir(), "bundle");
    }

    /** A copy step that puts a bundle into internal storage. */
    interface Copy {
        void run() throws IOException;
    }

    private void load(Copy copy) {
        run.setEnabled(false);
        stats.setText("copying and checking the bundle…");
        worker.execute(() -> {
            try {
                if (bundle != null) {
                    bundle.close();
                    bundle = null;
                }
                copy.run();
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
            } catch (IOException | EdgeVlmException e) {
                ui.post(() -> stats.setText("cannot load the bundle: " + e.getMessage()));
            }
        });
    }

    private void generate() {
        String selected = (String) task.getSelectedItem();
        String name = PLAIN.equals(selected) ? null : selected;
        String text = input.getText().toString();
        output.setText("");
        run.setEnabled(false);
        io.edgevlm.core.Bundle b = bundle;
        worker.execute(() -> {
            try {
                Decoder.Result r = b.generate(text, name, GenerationConfig.greedy(),
                        piece -> ui.post(() -> output.append(piece)));
                String other = otherTask(b, name);
                double switchMs = SwitchTimer.measure(b, text, name, other);
                String line = String.format(Locale.ROOT,
                        "%d prompt + %d new tokens · prefill %.1f ms · decode %.1f tok/s\n"
                                + "task switch (%s→%s): %+.2f ms\n%s%s",
                        r.promptTokens, r.tokens.size(), r.prefillNanos / 1e6, r.tokensPerSecond(),
                        label(other), label(name), switchMs, memory(), r.note == null ? "" : "\nnote: " + r.note);
                ui.post(() -> stats.setText(line));
            } catch (EdgeVlmException e) {
                ui.post(() -> stats.setText("error: " + e.getMessage()));
            } finally {
                ui.post(() -> run.setEnabled(true));
            }
        });
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
