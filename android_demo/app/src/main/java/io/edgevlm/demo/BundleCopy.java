package io.edgevlm.demo;

import android.content.ContentResolver;
import android.content.res.AssetManager;
import android.database.Cursor;
import android.net.Uri;
import android.provider.DocumentsContract;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.util.Arrays;

/**
 * Copies a bundle into internal storage, where the core reads it through java.nio.file (it checks every file's
 * sha256 there, so a broken copy is refused, not run). Sources: the APK's assets or a folder picked with the
 * Storage Access Framework.
 */
final class BundleCopy {
    private BundleCopy() {
    }

    /**
     * assets/{@code dir}/** into {@code target} (replacing what was there), unless {@code target} already holds
     * a copy with the same manifest.json (which lists every file's sha256, checked by the core at load): then
     * nothing is written and false is returned, so a 100+ MB bundle is copied once per install, not per start.
     */
    static boolean fromAssets(AssetManager assets, String dir, File target) throws IOException {
        String[] top = assets.list(dir);
        if (top == null || top.length == 0) {
            throw new IOException("no bundle in the app's assets/" + dir + " (see app/src/main/assets/README.md)");
        }
        File manifest = new File(target, "manifest.json");
        if (manifest.isFile()) {
            try (InputStream in = assets.open(dir + "/manifest.json")) {
                if (Arrays.equals(readAll(in), Files.readAllBytes(manifest.toPath()))) {
                    return false;
                }
            }
        }
        clear(target);
        copyAssets(assets, dir, target);
        return true;
    }

    private static byte[] readAll(InputStream in) throws IOException {
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

    /** A picked document tree (ACTION_OPEN_DOCUMENT_TREE) into {@code target}. */
    static boolean fromTree(ContentResolver cr, Uri tree, File target) throws IOException {
        clear(target);
        copyDocument(cr, tree, DocumentsContract.getTreeDocumentId(tree), target);
        return true;
    }

    private static void copyDocument(ContentResolver cr, Uri tree, String docId, File target) throws IOException {
        Uri children = DocumentsContract.buildChildDocumentsUriUsingTree(tree, docId);
        String[] cols = {DocumentsContract.Document.COLUMN_DOCUMENT_ID, DocumentsContract.Document.COLUMN_DISPLAY_NAME,
            DocumentsContract.Document.COLUMN_MIME_TYPE};
        target.mkdirs();
        try (Cursor c = cr.query(children, cols, null, null, null)) {
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

    private static void write(InputStream in, File out) throws IOException {
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
