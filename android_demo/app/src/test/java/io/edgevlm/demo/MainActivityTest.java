package io.edgevlm.demo;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assume.assumeTrue;
import static org.robolectric.Shadows.shadowOf;

import android.os.Looper;
import android.widget.Button;
import android.widget.SpinnerAdapter;
import android.widget.Spinner;
import android.widget.TextView;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.After;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.robolectric.Robolectric;
import org.robolectric.RobolectricTestRunner;
import org.robolectric.android.controller.ActivityController;
import org.robolectric.annotation.Config;

/**
 * The real MainActivity on Robolectric (offline, plain Maven) with the bundle the build put into the assets
 * ({@code -Dedgevlm.bundle=DIR}) and the Python runtime's outputs for it ({@code -Dedgevlm.app.expected=FILE},
 * written by tests/test_android_app.py): "Bundle from assets" copies and loads it, the spinner lists its tasks
 * and the plain backbone, each case's streamed output equals Python's (switching tasks between runs), and Cancel
 * stops a run after its first piece. ONNX Runtime runs on the desktop jar's natives here.
 */
@RunWith(RobolectricTestRunner.class)
@Config(sdk = 34)
public class MainActivityTest {
    private static final long GUARD_MS = 120_000; // only against a hang; nothing is timed

    private ActivityController<MainActivity> controller;

    @After
    public void tearDown() {
        MainActivity.pieceHook = null;
        if (controller != null) {
            controller.pause().stop().destroy();
        }
    }

    private static JSONObject expected() throws Exception {
        String path = System.getProperty("edgevlm.app.expected", "");
        assumeTrue("no -Dedgevlm.app.expected=FILE (tests/test_android_app.py passes it with a bundle)",
                !path.isEmpty());
        return new JSONObject(new String(Files.readAllBytes(new File(path).toPath()), StandardCharsets.UTF_8));
    }

    /** Runs the main looper until {@code done} holds (the worker is a real thread). */
    private static void until(BooleanSupplier done, String what) throws InterruptedException {
        long end = System.currentTimeMillis() + GUARD_MS;
        while (true) {
            shadowOf(Looper.getMainLooper()).idle();
            if (done.getAsBoolean()) {
                return;
            }
            if (System.currentTimeMillis() > end) {
                throw new AssertionError("gave up waiting for " + what);
            }
            Thread.sleep(5);
        }
    }

    private static String text(TextView v) {
        return v.getText().toString();
    }

    @Test
    public void loadsListsStreamsSwitchesTasksAndCancels() throws Exception {
        JSONObject exp = expected();
        controller = Robolectric.buildActivity(MainActivity.class).setup();
        MainActivity a = controller.get();
        Button run = a.findViewById(R.id.run);
        Button cancel = a.findViewById(R.id.cancel);
        Spinner task = a.findViewById(R.id.task);
        TextView input = a.findViewById(R.id.input);
        TextView output = a.findViewById(R.id.output);
        TextView stats = a.findViewById(R.id.stats);
        assertFalse(run.isEnabled());

        a.findViewById(R.id.load_assets).performClick();
        until(run::isEnabled, "the bundle to load: " + text(stats));
        assertTrue(text(stats), text(stats).startsWith("loaded " + exp.getString("quantization") + " backbone, "));
        assertTrue("copied into internal storage", new File(a.getFilesDir(), "bundle/manifest.json").isFile());
        List<String> shown = new ArrayList<>();
        SpinnerAdapter items = task.getAdapter();
        for (int k = 0; k < items.getCount(); k++) {
            shown.add((String) items.getItem(k));
        }
        List<String> tasks = new ArrayList<>();
        JSONArray names = exp.getJSONArray("tasks");
        for (int k = 0; k < names.length(); k++) {
            tasks.add(names.getString(k));
        }
        tasks.add("(plain backbone)");
        assertEquals(tasks, shown);

        JSONArray cases = exp.getJSONArray("cases");
        for (int k = 0; k < cases.length(); k++) { // a different task (or the plain backbone) each run
            JSONObject c = cases.getJSONObject(k);
            String label = c.isNull("task") ? "(plain backbone)" : c.getString("task");
            task.setSelection(shown.indexOf(label));
            input.setText(c.getString("input"));
            run.performClick();
            assertFalse(run.isEnabled());
            until(() -> run.isEnabled(), label + " to finish");
            assertEquals(label + ": streamed output == the Python runtime's", c.getString("text"), text(output));
            assertTrue(label + ": " + text(stats), text(stats).contains(" new tokens · prefill "));
            assertTrue(text(stats), text(stats).contains("task switch ("));
        }

        JSONObject c = cases.getJSONObject(0);
        task.setSelection(shown.indexOf(c.getString("task")));
        input.setText(c.getString("input"));
        CountDownLatch first = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        List<String> pieces = new ArrayList<>();
        MainActivity.pieceHook = piece -> { // parks the worker on the first piece until Cancel was pressed
            pieces.add(piece);
            if (pieces.size() == 1) {
                first.countDown();
                try {
                    go.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        run.performClick();
        assertTrue(first.await(GUARD_MS, TimeUnit.MILLISECONDS));
        assertTrue(cancel.isEnabled());
        cancel.performClick();
        go.countDown();
        until(() -> run.isEnabled(), "the cancelled run to end");
        assertEquals(List.of(pieces.get(0)), pieces);
        assertEquals("only the piece before Cancel", pieces.get(0), text(output));
        assertTrue(c.getString("text").startsWith(text(output)) && !c.getString("text").equals(text(output)));
        assertTrue(text(stats), text(stats).startsWith("cancelled after "));
        assertFalse(cancel.isEnabled());

        tamperedCopyIsRefusedThenRecopied(a, exp, run, task, output, stats);
    }

    /**
     * Loading again keeps the installed copy (same manifest.json); one flipped byte in it makes the core refuse the
     * bundle with one line naming the file, no task is offered and nothing runs; the next load copies it afresh.
     */
    private static void tamperedCopyIsRefusedThenRecopied(MainActivity a, JSONObject exp, Button run, Spinner task,
                                                         TextView output, TextView stats) throws Exception {
        File adapter = new File(a.getFilesDir(), "bundle/adapters/" + exp.getJSONArray("tasks").getString(0)
                + ".onnx_adapter");
        assertTrue(adapter.toString(), adapter.isFile());
        byte[] bytes = Files.readAllBytes(adapter.toPath());
        bytes[bytes.length / 2] ^= 1;
        Files.write(adapter.toPath(), bytes);
        long stamp = adapter.lastModified();
        a.findViewById(R.id.load_assets).performClick();
        until(() -> text(stats).startsWith("cannot load the bundle: "), "the refusal: " + text(stats));
        String msg = text(stats);
        assertFalse("one line: " + msg, msg.contains("\n"));
        assertTrue(msg, msg.contains(adapter.getName()) && msg.contains("checksum"));
        assertFalse(run.isEnabled());
        assertEquals(null, task.getAdapter());
        assertEquals("", text(output));
        assertFalse("the bad copy was dropped", adapter.exists());

        a.findViewById(R.id.load_assets).performClick();
        until(run::isEnabled, "the fresh copy to load: " + text(stats));
        assertTrue(adapter.isFile() && adapter.lastModified() >= stamp);
        assertEquals(exp.getJSONArray("tasks").length() + 1, task.getAdapter().getCount());
    }
}
