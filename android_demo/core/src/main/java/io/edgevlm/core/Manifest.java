package io.edgevlm.core;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A bundle's {@code manifest.json}, checked exactly as Python's {@code edgevlm.bundle} does (same order, same
 * one-line messages): schema version, required fields, io names, every path confined to the bundle, every
 * file's sha256. The only class that reads manifest fields, so new backbone fields are added here.
 */
public final class Manifest {
    public static final int SCHEMA_VERSION = 1;
    public static final String MANIFEST = "manifest.json";
    static final List<String> QUANT_MODES = List.of("fp32", "int8", "int4");
    static final List<String> TOP_KEYS = List.of("schema_version", "backbone", "tokenizer", "io", "tasks", "files");
    static final List<String> BACKBONE_KEYS = List.of("file", "n_layer", "n_head", "n_embd", "vocab_size", "n_positions", "quantization");
    static final List<String> TASK_KEYS = List.of("adapter_file", "bottleneck", "special_tokens", "special_token_ids", "template", "eos_token_id", "generation");

    public final Path root;
    /** {@code <root>/manifest.json} as the messages print it. */
    public final String where;
    final Map<String, Object> json;
    final Map<String, Object> backbone;
    final Map<String, Object> tokenizer;
    final Map<String, Object> tasks;
    final Map<String, Object> files;

    private Manifest(Path root, Map<String, Object> json) {
        this.root = root;
        this.where = root.resolve(MANIFEST).toString();
        this.json = json;
        this.backbone = asMap(json.get("backbone"));
        this.tokenizer = asMap(json.get("tokenizer"));
        this.tasks = asMap(json.get("tasks"));
        this.files = asMap(json.get("files"));
    }

    /** Reads, validates and checksums {@code root}'s manifest (Python's {@code load_manifest(root)}). */
    @SuppressWarnings("unchecked")
    public static Manifest load(Path root) {
        Path path = root.resolve(MANIFEST);
        if (!Files.isRegularFile(path)) {
            throw new BundleException(path + ": not found (is " + root + " an edgevlm bundle?)");
        }
        Object m;
        try {
            m = Json.parse(StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(Files.readAllBytes(path))).toString());
        } catch (IllegalArgumentException | CharacterCodingException e) {
            throw new BundleException(path + ": invalid JSON (" + e.getMessage() + ")");
        } catch (IOException e) {
            throw new BundleException(path + ": cannot read (" + e.getMessage() + ")");
        }
        String where = path.toString();
        require(m, TOP_KEYS, where);
        Manifest man = new Manifest(root, (Map<String, Object>) m);
        man.validate();
        man.verifyFiles();
        return man;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> asMap(Object o) {
        return o instanceof Map ? (Map<String, Object>) o : null;
    }

    /** Python's {@code _require}: an object holding every key. */
    static void require(Object d, List<String> keys, String where) {
        if (!(d instanceof Map)) {
            throw new BundleException(where + ": expected an object");
        }
        List<Object> missing = new ArrayList<>();
        for (String k : keys) {
            if (!((Map<?, ?>) d).containsKey(k)) {
                missing.add(k);
            }
        }
        if (!missing.isEmpty()) {
            throw new BundleException(where + ": missing field(s) " + Py.repr(missing));
        }
    }

    private void validate() {
        Object v = json.get("schema_version");
        if (!(v instanceof Number) || ((Number) v).doubleValue() != SCHEMA_VERSION || v instanceof Boolean) {
            throw new BundleException(where + ": schema_version " + Py.repr(v) + " is not supported (this edgevlm reads "
                    + SCHEMA_VERSION + ")");
        }
        require(backbone, BACKBONE_KEYS, where + ": backbone");
        if (!QUANT_MODES.contains(backbone.get("quantization"))) {
            throw new BundleException(where + ": backbone.quantization must be one of ('fp32', 'int8', 'int4')");
        }
        require(tokenizer, List.of("file"), where + ": tokenizer");
        Object layers = backbone.get("n_layer");
        if (!(layers instanceof Long) || !json.get("io").equals(ioSpec((int) (long) (Long) layers))) {
            throw new BundleException(where + ": io names do not match this edgevlm's graph layout for n_layer=" + layers);
        }
        if (files == null || files.isEmpty()) {
            throw new BundleException(where + ": files must list every file with its sha256");
        }
        for (String rel : files.keySet()) {
            confined(rel, "file");
        }
        List<Object> referenced = new ArrayList<>(List.of(backbone.get("file"), tokenizer.get("file")));
        if (tasks == null) {
            throw new BundleException(where + ": tasks must be an object");
        }
        for (Map.Entry<String, Object> t : tasks.entrySet()) {
            require(t.getValue(), TASK_KEYS, where + ": tasks." + t.getKey());
            referenced.add(((Map<?, ?>) t.getValue()).get("adapter_file"));
        }
        for (Object rel : referenced) {
            confined(rel, "file");
            if (!files.containsKey(rel)) {
                throw new BundleException(where + ": " + rel + " is used but has no checksum under 'files'");
            }
        }
    }

    /** The {@code io} section this layout implies: graph input/output names in order. */
    static Map<String, Object> ioSpec(int nLayer) {
        Map<String, Object> io = new LinkedHashMap<>();
        List<String> in = new ArrayList<>(List.of(Names.INPUT_IDS, Names.ATTENTION_MASK));
        in.addAll(Names.pastNames(nLayer));
        List<String> out = new ArrayList<>(List.of(Names.LOGITS));
        out.addAll(Names.presentNames(nLayer));
        io.put("inputs", in);
        io.put("outputs", out);
        io.put("adapter_inputs", Names.adapterNames(nLayer));
        return io;
    }

    /** {@code root/rel} if {@code rel} is a relative path that stays inside the bundle (Python's {@code confined}). */
    public Path confined(Object rel, String what) {
        if (!(rel instanceof String) || ((String) rel).isEmpty() || ((String) rel).startsWith("/")
                || ((String) rel).contains("\\")) {
            throw new BundleException(where + ": " + what + " " + Py.repr(rel) + " must be a relative path inside the bundle");
        }
        Path full = resolve(root.resolve((String) rel));
        if (!full.startsWith(resolve(root))) {
            throw new BundleException(where + ": " + what + " " + Py.repr(rel) + " points outside the bundle directory");
        }
        return full;
    }

    /** Python's non-strict {@code Path.resolve()}: absolute, symlinks of the existing part resolved, ".." folded. */
    static Path resolve(Path p) {
        Path abs = p.toAbsolutePath().normalize();
        Path existing = abs;
        while (existing != null && !Files.exists(existing)) {
            existing = existing.getParent();
        }
        if (existing == null) {
            return abs;
        }
        try {
            return existing.toRealPath().resolve(existing.relativize(abs)).normalize();
        } catch (IOException e) {
            return abs;
        }
    }

    private void verifyFiles() {
        for (Map.Entry<String, Object> e : files.entrySet()) {
            Path path = confined(e.getKey(), "file");
            if (!Files.isRegularFile(path)) {
                throw new BundleException(path + ": listed in the manifest but missing");
            }
            if (!sha256(path).equals(e.getValue())) {
                throw new BundleException(path + ": checksum mismatch (file truncated or modified)");
            }
        }
    }

    static String sha256(Path path) {
        try (InputStream in = Files.newInputStream(path)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 20];
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
            }
            StringBuilder b = new StringBuilder();
            for (byte x : md.digest()) {
                b.append(String.format("%02x", x));
            }
            return b.toString();
        } catch (IOException | NoSuchAlgorithmException e) {
            throw new BundleException(path + ": cannot read (" + e.getMessage() + ")");
        }
    }

    // -- typed accessors --------------------------------------------------------------------------

    /** An integer field of {@code backbone}; BundleException naming it when absent or not an integer. */
    public int backboneInt(String key) {
        Object v = backbone.get(key);
        if (!(v instanceof Long)) {
            throw new BundleException(where + ": backbone." + key + " must be an integer, got " + Py.repr(v));
        }
        return (int) (long) (Long) v;
    }

    /** A backbone field as stored (null when absent), for fields later architectures add. */
    public Object backboneField(String key) {
        return backbone.get(key);
    }

    public String quantization() {
        return (String) backbone.get("quantization");
    }

    public String backboneFile() {
        return (String) backbone.get("file");
    }

    public String tokenizerFile() {
        return (String) tokenizer.get("file");
    }

    /** A {@code tokenizer} field as stored, or {@code dflt} when the key is absent (a stored null stays null). */
    public Object tokenizerField(String key, Object dflt) {
        return tokenizer.containsKey(key) ? tokenizer.get(key) : dflt;
    }

    /** Task entries ({@code tasks.<name>} objects) in manifest order. */
    @SuppressWarnings("unchecked")
    public Map<String, Map<String, Object>> tasks() {
        Map<String, Map<String, Object>> out = new LinkedHashMap<>();
        tasks.forEach((k, v) -> out.put(k, (Map<String, Object>) v));
        return out;
    }
}
