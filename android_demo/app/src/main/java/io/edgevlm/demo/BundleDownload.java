package io.edgevlm.demo;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * A bundle downloaded on first run (the way to ship a 100+ MB bundle: the APK carries none): {@code BASE} is the
 * URL of the bundle's folder; {@code BASE/manifest.json} is fetched first (compared with the installed copy and
 * sized against the free space by {@link BundleCopy#install}), then every file its {@code files} list names, each
 * to the same relative path. The core checks every file's sha256 from that manifest at load, so a corrupted or
 * substituted download is refused, not run; paths leaving the folder are refused before anything is fetched.
 */
final class BundleDownload implements BundleCopy.Source {
    private static final int MANIFEST_LIMIT = 4 << 20; // a manifest is a few KB; a URL that is not one is refused
    private final String base;
    private byte[] fetched; // the manifest as fetched first: the files are the ones it lists

    BundleDownload(String base) {
        this.base = base.endsWith("/") ? base : base + "/";
    }

    @Override
    public byte[] manifest() throws IOException {
        if (fetched != null) {
            return fetched;
        }
        byte[] bytes = get("manifest.json", null);
        if (bytes.length > MANIFEST_LIMIT) {
            throw new IOException(base + "manifest.json: " + bytes.length + " bytes, not a bundle manifest");
        }
        fetched = bytes;
        return bytes;
    }

    @Override
    public void copyInto(File dir) throws IOException {
        JSONObject files;
        try {
            files = new JSONObject(new String(manifest(), StandardCharsets.UTF_8)).getJSONObject("files");
        } catch (JSONException e) {
            throw new IOException(base + "manifest.json: no files list (" + e.getMessage() + ")");
        }
        for (Iterator<String> k = files.keys(); k.hasNext(); ) {
            String rel = k.next();
            if (rel.startsWith("/") || rel.contains("\\") || ("/" + rel + "/").contains("/../")) {
                throw new IOException(base + "manifest.json: file " + rel + " leaves the bundle's folder");
            }
            get(rel, new File(dir, rel));
        }
    }

    /** {@code BASE/rel} into {@code out} (null: returned as bytes); an HTTP error is one line naming the URL. */
    private byte[] get(String rel, File out) throws IOException {
        URL url;
        try {
            url = new URI(base).resolve(new URI(null, null, rel, null)).toURL();
        } catch (URISyntaxException | IllegalArgumentException e) {
            throw new IOException("bundle URL " + base + rel + " is not a URL (" + e.getMessage() + ")");
        }
        HttpURLConnection c = (HttpURLConnection) url.openConnection();
        c.setConnectTimeout(15_000);
        c.setReadTimeout(30_000);
        try {
            if (c.getResponseCode() != HttpURLConnection.HTTP_OK) {
                throw new IOException("GET " + url + ": HTTP " + c.getResponseCode());
            }
            try (InputStream in = c.getInputStream()) {
                if (out == null) {
                    return BundleCopy.readAll(in);
                }
                BundleCopy.write(in, out);
                return null;
            }
        } finally {
            c.disconnect();
        }
    }
}
