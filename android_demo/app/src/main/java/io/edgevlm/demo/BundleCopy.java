package io.edgevlm.demo;

import android.content.ContentResolver;
import android.content.res.AssetManager;
import android.database.Cursor;
import android.net.Uri;
import android.os.StatFs;
import android.provider.DocumentsContract;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.Iterator;
import java.util.Locale;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * Installs a bundle into app-private storage ({@code files/bundle}), where the core reads it through java.nio.file
 * and checks every file's sha256 at each load. One installed copy at a time, never a partial one: a new copy is
 * written into {@code files/bundle.partial}, gets the marker file {@link #MARKER} once every file is written, and
 * is then renamed to {@code files/bundle}; a folder without the marker (a copy cut off by a crash, a full disk or
 * a killed process) is never loaded and is deleted by the next install. Before anything is written, the bytes the
 * manifest's {@code sizes} list are compared with the free space ({@link StatFs}); when it is short nothing is
 * touched and {@link StorageShort} says how much is needed in one line. Sources: the APK's assets or a folder the
 * user picked with the Storage Access Framework (each copied once; an installed copy with the same manifest.json
 * is kept).
 */
final class BundleCopy {
    static final String MARKER = ".edgevlm-installed";
    /** Left free beyond the bundle, so that installing it does not fill the device to the last byte. */
    static final long HEADROOM = 16L << 20;

    private BundleCopy() {
    }

    /** Free space too short for the bundle; the message is one line for the screen. */
    static final class StorageShort extends IOException {
        StorageShort(String message) {
            super(message);
        }
    }

    /** Where a bundle comes from: its manifest.json first (to compare and size it), then all its files. */
    interface Source {
        byte[] manifest() throws IOException;

        void copyInto(File dir) throws IOException;
    }

    /** The installed bundle's folder under {@code filesDir}. */
    static File installed(File filesDir) {
        return new File(filesDir, "bundle");
    }

    /** True when {@code dir} is a complete install (it carries the marker). */
    static boolean complete(File dir) {
        return new File(dir, MARKER).isFile();
    }

    /**
     * {@code src} installed into {@code filesDir} unless a complete copy with the same manifest.json is there
     * (then false: nothing written, so a 100+ MB bundle is copied once, not per start). StorageShort when the free
     * space (plus what the replaced copy frees) cannot hold the bundle: nothing is deleted or written then.
     */
    static boolean install(Source src, File filesDir) throws IOException {
        byte[] manifest = src.manifest();
        File target = installed(filesDir);
        File partial = new File(filesDir, "bundle.partial");
        clear(partial); // what an interrupted install left
        if (complete(target) && Arrays.equals(manifest, Files.readAllBytes(new File(target, "manifest.json").toPath()))) {
            return false;
        }
        long need = bytesListed(manifest) + HEADROOM;
        long avail = new StatFs(filesDir.getPath()).getAvailableBytes();
        long free = avail + sizeOf(target); // the copy it replaces is freed
        if (need > free) {
            throw new StorageShort(String.format(Locale.ROOT, "not enough free storage for the bundle: it needs %s "
                    + "(+%s headroom) and app storage has %s free; free up %s and load again", mb(need - HEADROOM),
                    mb(HEADROOM), mb(free), mb(need - free)));
        }
        if (need > avail) { // no room for both: the old copy goes first (a failed install then leaves none)
            clear(target);
        }
        try {
            src.copyInto(partial);
            write(new java.io.ByteArrayInputStream(manifest), new File(partial, "manifest.json"));
            write(new java.io.ByteArrayInputStream("complete\n".getBytes(StandardCharsets.UTF_8)),
                    new File(partial, MARKER));
            clear(target); // the old copy, kept until the new one was complete
            if (!partial.renameTo(target)) {
                throw new IOException("cannot rename " + partial + " to " + target);
            }
        } finally {
            clear(partial); // a failed copy leaves nothing behind
        }
        return true;
    }

    /** The sum of the manifest's {@code sizes} (bytes per file; 0 for a manifest without them). */
    static long bytesListed(byte[] manifest) throws IOException {
        try {
            JSONObject sizes = new JSONObject(new String(manifest, StandardCharsets.UTF_8)).optJSONObject("sizes");
            long n = manifest.length;
            for (Iterator<String> k = sizes == null ? null : sizes.keys(); k != null && k.hasNext(); ) {
                n += sizes.getLong(k.next());
            }
            return n;
        } catch (JSONException e) {
            throw new IOException("manifest.json is not a JSON object (" + e.getMessage() + ")");
        }
    }

    private static String mb(long bytes) {
        return String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
    }

    private static long sizeOf(File f) {
        File[] kids = f.listFiles();
        long n = f.isFile() ? f.length() : 0;
        for (File k : kids == null ? new File[0] : kids) {
            n += sizeOf(k);
        }
        return n;
    }

    /** The APK's assets/{@code dir}/** (a demo path: the bundle is then in the APK and in app storage). */
    static Source assets(AssetManager assets, String dir) {
        return new Source() {
            @Override
            public byte[] manifest() throws IOException {
                String[] top = assets.list(dir);
                if (top == null || top.length == 0) {
                    throw new IOException("no bundle in the app's assets/" + dir + " (see app/src/main/assets/README.md)");
                }
                try (InputStream in = assets.open(dir + "/manifest.json")) {
                    return readAll(in);
                }
            }

            @Override
            public void copyInto(File target) throws IOException {
                copyAssets(assets, dir, target);
            }
        };
    }

    static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[1 << 16];
        for (int n; (n = in.read(buf)) > 0; ) {
            out.write(buf, 0, n);
        }
        return out.toByteArray();
    }

    private static void copyAssets(AssetManager assets, String path, File target) throws IOException {
        String[] children = assets.list(path);
        if (children == null || children.length == 0) { // a file
            try (InputStream in = assets.open(path)) {
                write(in, target);
            }
            return;
        }
        target.mkdirs();
        for (String c : children) {
            copyAssets(assets, path + "/" + c, new File(target, c));
        }
    }

    /** A picked document tree (ACTION_OPEN_DOCUMENT_TREE): its manifest.json, then every document. */
    static Source tree(ContentResolver cr, Uri tree) {
        String root = DocumentsContract.getTreeDocumentId(tree);
        return new Source() {
            @Override
            public byte[] manifest() throws IOException {
                String id = child(cr, tree, root, "manifest.json");
                try (InputStream in = cr.openInputStream(DocumentsContract.buildDocumentUriUsingTree(tree, id))) {
                    if (in == null) {
                        throw new IOException("cannot open manifest.json in " + tree);
                    }
                    return readAll(in);
                }
            }

            @Override
            public void copyInto(File target) throws IOException {
                copyDocument(cr, tree, root, target);
            }
        };
    }

    private static final String[] COLUMNS = {DocumentsContract.Document.COLUMN_DOCUMENT_ID,
        DocumentsContract.Document.COLUMN_DISPLAY_NAME, DocumentsContract.Document.COLUMN_MIME_TYPE};

    private static String child(ContentResolver cr, Uri tree, String docId, String name) throws IOException {
        try (Cursor c = cr.query(DocumentsContract.buildChildDocumentsUriUsingTree(tree, docId), COLUMNS, null, null,
                null)) {
            while (c != null && c.moveToNext()) {
                if (name.equals(c.getString(1))) {
                    return c.getString(0);
                }
            }
        }
        throw new IOException("the picked folder has no " + name + " (pick the bundle's own folder)");
    }

    private static void copyDocument(ContentResolver cr, Uri tree, String docId, File target) throws IOException {
        Uri children = DocumentsContract.buildChildDocumentsUriUsingTree(tree, docId);
        target.mkdirs();
        try (Cursor c = cr.query(children, COLUMNS, null, null, null)) {
            if (c == null) {
                throw new IOException("cannot list " + tree);
            }
            while (c.moveToNext()) {
                String id = c.getString(0);
                File out = new File(target, c.getString(1));
                if (DocumentsContract.Document.MIME_TYPE_DIR.equals(c.getString(2))) {
                    copyDocument(cr, tree, id, out);
                } else {
                    try (InputStream in = cr.openInputStream(DocumentsContract.buildDocumentUriUsingTree(tree, id))) {
                        if (in == null) {
                            throw new IOException("cannot open " + out.getName());
                        }
                        write(in, out);
                    }
                }
            }
        }
    }

    static void write(InputStream in, File out) throws IOException {
        File parent = out.getParentFile();
        if (parent != null && !parent.isDirectory() && !parent.mkdirs()) { // AssetManager.list may name nested paths
            throw new IOException("cannot create " + parent);
        }
        try (OutputStream o = new FileOutputStream(out)) {
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                o.write(buf, 0, n);
            }
        }
    }

    /** Deletes {@code f} and everything under it. */
    static void clear(File f) {
        File[] kids = f.listFiles();
        if (kids != null) {
            for (File k : kids) {
                clear(k);
            }
        }
        f.delete();
    }
}
