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
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A bundle's {@code manifest.json}, checked exactly as Python's {@code core.manifest.Manifest.from_json} and
 * {@code core.bundle.load_manifest} do (same order, same one-line messages naming file and field path): types and
 * values of every field, io names, every path confined to the bundle, every file's sha256. Optional fields
 * (backbone architecture/n_kv_head/head_dim, tokenizer eos/chat_template) get Python's defaults; unknown keys are
 * ignored. The only class that reads manifest JSON.
 */
public final class Manifest {
    public static final int SCHEMA_VERSION = 1;
    public static final String MANIFEST = "manifest.json";
    static final List<String> QUANT_MODES = List.of("fp32", "int8", "int4");
    static final List<String> ARCHITECTURES = List.of("gpt2", "llama");
    /** How the graph's cache may be fed (Python's KV_CACHES); "shared" graphs get a shared cache (Steps). */
    static final List<String> KV_CACHES = List.of("concat", "shared");
    static final String TASK_NAME = "[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}";
    static final String SHA256 = "[0-9a-f]{64}";

    public final Path root;
    /** {@code <root>/manifest.json} as the messages print it. */
    public final String where;
    public final Backbone backbone;
    /** The tokenizer file, the plain backbone's EOS id (null: none) and chat template (null: none). */
    public final String tokenizerFile;
    public final Integer eosTokenId;
    public final String chatTemplate;
    /** The text between a conversation's messages (Python's {@code chat_turns}; {@link Chat}), or null. */
    public final Map<String, String> chatTurns;
    /** Task entries by name, in manifest order. */
    public final Map<String, TaskEntry> tasks;
    /** Relative path -> sha256. */
    public final Map<String, String> files;

    /** The frozen backbone (Python's {@code BackboneRecord}); n_kv_head/head_dim default to GPT-2's. */
    public static final class Backbone {
        public final String file;
        public final int nLayer;
        public final int nHead;
        public final int nEmbd;
        public final int vocabSize;
        public final int nPositions;
        public final String quantization;
        public final String architecture;
        public final int nKvHead;
        public final int headDim;
        public final String fingerprint;
        public final String source;
        /** "concat" (bundles before 2026-12-01) or "shared": the graph can also append to one bound buffer. */
        public final String kvCache;

        Backbone(Fields f) {
            int[] s = new int[5];
            String[] keys = {"n_layer", "n_head", "n_embd", "vocab_size", "n_positions"};
            for (int k = 0; k < keys.length; k++) {
                s[k] = (int) (long) (Long) f.get(keys[k], Fields::pos, Fields.POS);
            }
            nLayer = s[0];
            nHead = s[1];
            nEmbd = s[2];
            vocabSize = s[3];
            nPositions = s[4];
            nKvHead = (int) (long) (Long) f.get("n_kv_head", Fields::pos, Fields.POS, (long) nHead);
            if (nHead % nKvHead != 0) {
                throw Fields.fail(f.where, f.name("n_kv_head"), "a divisor of n_head=" + nHead, (long) nKvHead);
            }
            if (!f.d.containsKey("head_dim") && nEmbd % nHead != 0) {
                throw new BundleException(f.where + ": " + f.name("head_dim") + ": missing (n_embd is not divisible by n_head)");
            }
            file = (String) f.get("file", Fields::str, "a file name");
            quantization = (String) f.get("quantization", Fields.oneOf(QUANT_MODES), "one of " + Py.repr(QUANT_MODES));
            architecture = (String) f.get("architecture", Fields.oneOf(ARCHITECTURES), "one of " + Py.repr(ARCHITECTURES),
                    "gpt2");
            headDim = (int) (long) (Long) f.get("head_dim", Fields::pos, Fields.POS, (long) (nEmbd / nHead));
            fingerprint = (String) f.get("fingerprint", v -> v instanceof String, "a string", "");
            source = (String) f.get("source", v -> v instanceof String, "a string", "");
            kvCache = (String) f.get("kv_cache", Fields.oneOf(KV_CACHES), "one of " + Py.repr(KV_CACHES), "concat");
        }
    }

    @SuppressWarnings("unchecked")
    private Manifest(Path root, Object json) {
        this.root = root;
        this.where = root.resolve(MANIFEST).toString();
        Fields f = new Fields(json, where, "");
        Object version = f.get("schema_version", Fields::isInt, "schema version " + SCHEMA_VERSION);
        if ((Long) version != SCHEMA_VERSION) {
            throw new BundleException(where + ": schema_version " + Py.repr(version) + " is not supported (this edgevlm reads "
                    + SCHEMA_VERSION + ")");
        }
        backbone = new Backbone(f.sub("backbone"));
        if (!f.get("io", v -> true, "an object").equals(ioSpec(backbone.nLayer))) {
            throw new BundleException(where + ": io: names do not match this edgevlm's graph layout for n_layer="
                    + backbone.nLayer);
        }
        Map<String, Object> taskJson = f.sub("tasks").d;
        for (String k : taskJson.keySet()) {
            if (!Fields.pyFullMatch(TASK_NAME, k)) {
                throw Fields.fail(where, "tasks", "task names of letters, digits, '_' or '-'", k);
            }
        }
        Fields tok = f.sub("tokenizer");
        String oneInput = "a string with " + Prompts.INPUT_FIELD + " once";
        chatTemplate = (String) tok.get("chat_template", Fields.opt(v -> Fields.str(v) && countInput((String) v) == 1),
                oneInput, null);
        chatTurns = chatTurns(tok, chatTemplate);
        tokenizerFile = (String) tok.get("file", Fields::str, "a file name");
        Long eos = (Long) tok.get("eos_token_id", Fields.opt(Fields.token(backbone.vocabSize)),
                "a token id below " + backbone.vocabSize, null);
        eosTokenId = eos == null ? null : (int) (long) eos;
        Map<String, TaskEntry> t = new LinkedHashMap<>();
        taskJson.forEach((k, v) -> t.put(k, TaskEntry.fromJson(v, where, backbone.vocabSize, "tasks." + k)));
        tasks = Collections.unmodifiableMap(t);
        Object fl = f.get("files", Manifest::checksums, "an object of file -> sha256 (at least one)");
        Map<String, String> fm = new LinkedHashMap<>();
        ((Map<String, Object>) fl).forEach((k, v) -> fm.put(k, (String) v));
        files = Collections.unmodifiableMap(fm);
        f.get("export_log", v -> v instanceof Map, "an object", null);
    }

    /** {@code tokenizer.chat_turns} (null: absent), which must agree with {@code chat_template} as Python checks. */
    @SuppressWarnings("unchecked")
    private static Map<String, String> chatTurns(Fields tok, String template) {
        Map<String, String> turns = (Map<String, String>) tok.get("chat_turns", Fields.opt(Chat::checkTurns),
                "an object of transition texts (edgevlm.core.chat)", null);
        if (turns == null) {
            return null;
        }
        if (!(turns.get("start:user") + Prompts.INPUT_FIELD + turns.get("user:end")).equals(template)) {
            throw new BundleException(tok.where + ": " + tok.path + ".chat_turns: does not match " + tok.path
                    + ".chat_template (edited by hand?)");
        }
        return Collections.unmodifiableMap(new LinkedHashMap<>(turns));
    }

    private static int countInput(String s) {
        int n = 0;
        for (int k = s.indexOf(Prompts.INPUT_FIELD); k >= 0; k = s.indexOf(Prompts.INPUT_FIELD, k + Prompts.INPUT_FIELD.length())) {
            n++;
        }
        return n;
    }

    private static boolean checksums(Object v) {
        return v instanceof Map && !((Map<?, ?>) v).isEmpty()
                && ((Map<?, ?>) v).values().stream().allMatch(s -> Fields.pyFullMatch(SHA256, s));
    }

    /** Reads, validates and checksums {@code root}'s manifest (Python's {@code load_manifest(root)}). */
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
        Manifest man = new Manifest(root, m);
        man.checkPaths();
        man.verifyFiles();
        return man;
    }

    /** Every file the manifest points at (Python's {@code referenced_files}). */
    public List<String> referencedFiles() {
        List<String> out = new ArrayList<>(List.of(backbone.file, tokenizerFile));
        tasks.values().forEach(t -> out.add(t.adapterFile));
        return out;
    }

    /** Python's {@code check_paths}: every path confined, every referenced file checksummed. */
    private void checkPaths() {
        for (String rel : files.keySet()) {
            confined(rel, "file");
        }
        for (String rel : referencedFiles()) {
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
        for (Map.Entry<String, String> e : files.entrySet()) {
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

    /** Python's {@code core.bundle.describe}: the backbone line, then one line per task sorted by name. */
    public List<String> describe() {
        Backbone b = backbone;
        List<String> lines = new ArrayList<>();
        lines.add(b.architecture + " " + (b.source.isEmpty() ? "backbone" : b.source) + ": n_layer=" + b.nLayer
                + " n_embd=" + b.nEmbd + " n_head=" + b.nHead + " n_kv_head=" + b.nKvHead + " vocab=" + b.vocabSize
                + " context=" + b.nPositions + " quantization=" + b.quantization);
        tasks.keySet().stream().sorted().forEach(name -> {
            TaskEntry t = tasks.get(name);
            String share = new java.math.BigDecimal(t.trainableShare).setScale(2, java.math.RoundingMode.HALF_EVEN)
                    .toPlainString(); // Python's {:.2f}: the exact binary value, half to even
            lines.add(name + "\tbottleneck=" + t.bottleneck + "\tparams="
                    + String.format(java.util.Locale.ROOT, "%,d", t.trainableParams) + " (" + share + "%)\ttokens="
                    + String.join(" ", t.specialTokens) + "\ttemplate=" + Py.repr(t.template));
        });
        return lines;
    }

    public String quantization() {
        return backbone.quantization;
    }

    public String backboneFile() {
        return backbone.file;
    }

    public String tokenizerFile() {
        return tokenizerFile;
    }
}
