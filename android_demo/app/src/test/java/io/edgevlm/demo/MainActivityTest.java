package io.edgevlm.demo;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assume.assumeTrue;
import static org.robolectric.Shadows.shadowOf;

import android.content.Intent;
import android.os.Looper;
import com.sun.net.httpserver.HttpServer;
import android.widget.Button;
import android.widget.SpinnerAdapter;
import android.widget.Spinner;
import android.widget.TextView;
import java.io.File;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
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
import org.robolectric.shadows.ShadowStatFs;

/**
 * The real MainActivity on Robolectric (offline, plain Maven) with the bundle the build put into the assets
 * ({@code -Dedgevlm.bundle=DIR}) and the Python runtime's outputs for it ({@code -Dedgevlm.app.expected=FILE},
 * written by tests/test_android_app.py): with too little free storage "Bundle from assets" says so in one line and
 * writes nothing; with enough it installs (temp folder, marker, rename) and loads it, the spinner lists its tasks
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

        storageShortIsOneLineAndTouchesNothing(a, stats);
        ShadowStatFs.registerStats(a.getFilesDir(), 1 << 24, 1 << 22, 1 << 22); // 16 GiB free (4 KiB blocks)
        a.findViewById(R.id.load_assets).performClick();
        until(run::isEnabled, "the bundle to load: " + text(stats));
        assertTrue(text(stats), text(stats).startsWith("loaded " + exp.getString("quantization") + " backbone, "));
        assertTrue("installed into app storage", new File(a.getFilesDir(), "bundle/manifest.json").isFile());
        assertTrue("marked complete", new File(a.getFilesDir(), "bundle/" + BundleCopy.MARKER).isFile());
        assertFalse("no partial copy left", new File(a.getFilesDir(), "bundle.partial").exists());
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
     * With less free space than the manifest's sizes plus the headroom (Robolectric's StatFs reports what the test
     * registers: here 2 MB), loading says so in one line before anything is written, and nothing can run.
     */
    private static void storageShortIsOneLineAndTouchesNothing(MainActivity a, TextView stats) throws Exception {
        ShadowStatFs.registerStats(a.getFilesDir(), 1 << 20, 512, 512); // 2 MiB available
        a.findViewById(R.id.load_assets).performClick();
        until(() -> text(stats).startsWith("not enough free storage"), "the storage message: " + text(stats));
        String msg = text(stats);
        assertFalse("one line: " + msg, msg.contains("\n"));
        assertTrue(msg, msg.matches("not enough free storage for the bundle: it needs [0-9.]+ MB \\(\\+16\\.8 MB "
                + "headroom\\) and app storage has 2\\.1 MB free; free up [0-9.]+ MB and load again"));
        assertFalse("nothing written", new File(a.getFilesDir(), "bundle").exists()
                || new File(a.getFilesDir(), "bundle.partial").exists());
        assertFalse(((Button) a.findViewById(R.id.run)).isEnabled());
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

    /** Serves {@code dir}'s files under /b/ (404 for names in {@code missing}), counting the GETs. */
    private static HttpServer serve(File dir, Set<String> missing, AtomicInteger gets) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/b/", ex -> {
            String rel = ex.getRequestURI().getPath().substring("/b/".length());
            File f = new File(dir, rel);
            gets.incrementAndGet();
            if (missing.contains(rel) || !f.isFile()) {
                ex.sendResponseHeaders(404, -1);
                ex.close();
                return;
            }
            byte[] b = Files.readAllBytes(f.toPath());
            ex.sendResponseHeaders(200, b.length);
            try (OutputStream o = ex.getResponseBody()) {
                o.write(b);
            }
        });
        server.start();
        return server;
    }

    /**
     * "Download bundle" (the launch intent's bundle_url: a local HTTP server serving the test bundle's folder): a
     * file the server does not have is one line naming its URL and leaves nothing behind; then the bundle is
     * installed (every listed file byte for byte, the marker, no partial folder) and loads; loading again fetches
     * only manifest.json (installed once, not per start).
     */
    @Test
    public void downloadsOnFirstRunOnce() throws Exception {
        JSONObject exp = expected();
        String dir = System.getProperty("edgevlm.bundle", "");
        assumeTrue("no -Dedgevlm.bundle=DIR", !dir.isEmpty());
        Set<String> missing = ConcurrentHashMap.newKeySet();
        AtomicInteger gets = new AtomicInteger();
        HttpServer server = serve(new File(dir), missing, gets);
        try {
            String url = "http://127.0.0.1:" + server.getAddress().getPort() + "/b/";
            Intent intent = new Intent(Intent.ACTION_MAIN).putExtra(MainActivity.EXTRA_BUNDLE_URL, url);
            controller = Robolectric.buildActivity(MainActivity.class, intent).setup();
            MainActivity a = controller.get();
            ShadowStatFs.registerStats(a.getFilesDir(), 1 << 24, 1 << 22, 1 << 22);
            Button run = a.findViewById(R.id.run);
            TextView stats = a.findViewById(R.id.stats);
            File installed = new File(a.getFilesDir(), "bundle");

            missing.add("tokenizer.json");
            a.findViewById(R.id.load_url).performClick();
            until(() -> text(stats).startsWith("cannot install the bundle: "), "the refusal: " + text(stats));
            assertEquals("cannot install the bundle: GET " + url + "tokenizer.json: HTTP 404", text(stats));
            assertFalse("nothing left behind", installed.exists() || new File(a.getFilesDir(), "bundle.partial").exists());
            assertFalse(run.isEnabled());

            missing.clear();
            a.findViewById(R.id.load_url).performClick();
            until(run::isEnabled, "the downloaded bundle to load: " + text(stats));
            assertTrue(text(stats), text(stats).startsWith("loaded " + exp.getString("quantization") + " backbone, "));
            JSONObject files = new JSONObject(new String(Files.readAllBytes(new File(dir, "manifest.json").toPath()),
                    StandardCharsets.UTF_8)).getJSONObject("files");
            for (java.util.Iterator<String> k = files.keys(); k.hasNext(); ) {
                String rel = k.next();
                assertTrue(rel, java.util.Arrays.equals(Files.readAllBytes(new File(dir, rel).toPath()),
                        Files.readAllBytes(new File(installed, rel).toPath())));
            }
            assertTrue(new File(installed, BundleCopy.MARKER).isFile());
            assertFalse(new File(a.getFilesDir(), "bundle.partial").exists());

            int before = gets.get();
            a.findViewById(R.id.load_url).performClick();
            until(() -> run.isEnabled() && text(stats).startsWith("loaded "), "the second load: " + text(stats));
            assertEquals("only manifest.json is fetched again", before + 1, gets.get());
        } finally {
            server.stop(0);
        }
    }
}
