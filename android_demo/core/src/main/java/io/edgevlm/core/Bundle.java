package io.edgevlm.core;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoraAdapter;
import ai.onnxruntime.OrtSession;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;

/**
 * A loaded edgevlm bundle, the Java twin of Python's {@code edgevlm.runtime.Runtime}: the manifest checked
 * (schema, checksums, confined paths, shapes), one {@code OrtSession} for the frozen backbone and one
 * {@code OrtLoraAdapter} per task, loaded once. Each call picks its task with
 * {@code RunOptions.addActiveLoraAdapter} (null = the plain backbone). Thread-safe: calls share only read-only
 * state and each owns its cache.
 */
public final class Bundle implements AutoCloseable {
    public static final int DEFAULT_MAX_NEW_TOKENS = 64; // the plain backbone has no task defaults

    public final Path root;
    public final Manifest manifest;
    public final GraphInfo graph;
    public final ByteLevelBpe tokenizer;
    private final OrtSession session;
    private final Map<String, Task> tasks;
    private final OrtLoraAdapter options; // logits_to_keep = 1 when the graph has the option, else null
    private final Decoder decoder;
    private final Decoder allLogits; // without the graph options: every prompt position's logits (A/B benchmark)
    private final Integer eos; // for task=null

    private Bundle(Path root, Manifest manifest, GraphInfo graph, ByteLevelBpe tokenizer, OrtSession session,
                   Map<String, Task> tasks, OrtLoraAdapter options) {
        this.root = root;
        this.manifest = manifest;
        this.graph = graph;
        this.tokenizer = tokenizer;
        this.session = session;
        this.tasks = Collections.unmodifiableMap(tasks);
        this.options = options;
        // the shared cache as Python's Steps uses it: a kv_cache: shared graph with the logits_to_keep option
        this.decoder = new Decoder(OrtEnvironment.getEnvironment(), session, graph, options,
                graph.sharedCache && options != null);
        this.allLogits = new Decoder(OrtEnvironment.getEnvironment(), session, graph, null, false);
        this.eos = manifest.eosTokenId;
    }

    /** The bundle's graph in ONNX Runtime's format (Python: {@code core.bundle.ORT_FILE}). */
    static final String ORT_FILE = "backbone.ort";

    /** {@link #load(Path, Integer, boolean)} with all cores and sleeping worker threads. */
    public static Bundle load(Path dir) {
        return load(dir, null, false);
    }

    /**
     * Checks {@code dir} and loads it. {@code threads}: intra-op threads (null: all cores); {@code spin}: let
     * idle ORT worker threads spin (lower latency on an otherwise idle device, slower on a busy one).
     */
    public static Bundle load(Path dir, Integer threads, boolean spin) {
        return load(dir, threads, spin, Collections.emptyList(), "onnx");
    }

    /**
     * {@link #load(Path, Integer, boolean)} with ONNX Runtime execution {@code providers} (names in order of
     * preference, checked against this build's; empty: the CPU provider) and {@code graph} "onnx" (the manifest's
     * graph) or "ort" (the bundle's {@code backbone.ort}, written by {@code edgevlm export --ort}), as Python's
     * {@code Runtime.load(providers=, graph=)}.
     */
    public static Bundle load(Path dir, Integer threads, boolean spin, List<String> providers, String graph) {
        return load(dir, threads, spin, providers, graph, Collections.emptyMap());
    }

    /**
     * {@link #load(Path, Integer, boolean, List, String)} with ONNX Runtime session config entries (Python's
     * {@code Runtime.load(session_options={...})}: e.g. {@code session.intra_op.allow_spinning},
     * {@code session.dynamic_block_base}), added after the threads and spin settings. ONNX Runtime ignores keys
     * it does not know; an entry whose value it refuses is one ConfigException line naming it.
     */
    public static Bundle load(Path dir, Integer threads, boolean spin, List<String> providers, String graph,
                              Map<String, String> sessionConfig) {
        Manifest m = Manifest.load(dir);
        Path tokPath = m.confined(m.tokenizerFile(), "tokenizer.file");
        ByteLevelBpe tok;
        try {
            tok = ByteLevelBpe.fromJson(new String(Files.readAllBytes(tokPath), StandardCharsets.UTF_8));
        } catch (IOException | RuntimeException e) {
            throw new BundleException(tokPath + ": cannot read the tokenizer (" + e.getMessage() + ")");
        }
        Path graphPath = graphPath(dir, m, graph);
        java.util.Set<Path> listed = new java.util.HashSet<>();
        m.files.keySet().forEach(rel -> listed.add(m.confined(rel, "file"))); // what ORT may map: checksummed files
        if (!graphPath.toString().endsWith(".ort")) { // an .ort graph holds its weights itself
            GraphFiles.check(graphPath, listed);
        }
        OrtSession session = Sessions.open(graphPath, threads, spin, providers, sessionConfig);
        Map<String, Task> tasks = new LinkedHashMap<>();
        try {
            GraphInfo g = GraphInfo.check(session, m, dir.resolve(m.backboneFile()));
            GraphInfo.checkIdentity(session.getMetadata().getCustomMetadata(), m, dir.resolve(m.backboneFile()));
            int n = tok.sizeWithAdded(); // a larger tokenizer would map text onto task-embedding ids
            if (n > m.backbone.vocabSize) {
                throw new BundleException(dir.resolve(m.tokenizerFile()) + ": the tokenizer has " + n
                        + " tokens but the graph's vocabulary only " + m.backbone.vocabSize
                        + " (tokenizer from another model)");
            }
            for (Map.Entry<String, TaskEntry> e : m.tasks.entrySet()) {
                String name = e.getKey();
                Path file = m.confined(e.getValue().adapterFile, "tasks." + name + ".adapter_file");
                tasks.put(name, TaskLoader.load(name, e.getValue(), file, g, m.where, m.backbone.fingerprint));
            }
            OrtLoraAdapter options = g.keepsLogits
                    ? OrtLoraAdapter.create(OptionAdapter.int64(Names.LOGITS_TO_KEEP, 1)) : null;
            return new Bundle(dir, m, g, tok, session, tasks, options);
        } catch (OrtException | RuntimeException e) {
            tasks.values().forEach(t -> t.adapter.close());
            closeQuietly(session);
            if (e instanceof OrtException) {
                throw new BundleException(graphPath + ": ONNX Runtime cannot read the graph (" + firstLine(e) + ")");
            }
            throw (RuntimeException) e;
        }
    }

    /** Python's {@code session.graph_path}: the manifest's graph, or the listed {@code backbone.ort}. */
    static Path graphPath(Path dir, Manifest m, String graph) {
        if ("onnx".equals(graph)) {
            return m.confined(m.backboneFile(), "backbone.file");
        }
        if (!"ort".equals(graph)) {
            throw new ConfigException("graph must be 'onnx' or 'ort', got " + Py.repr(graph));
        }
        if (!m.files.containsKey(ORT_FILE)) {
            throw new BundleException(dir + ": the bundle has no " + ORT_FILE + " (export it with --ort)");
        }
        return m.confined(ORT_FILE, "files");
    }

    static String firstLine(Exception e) {
        String s = String.valueOf(e.getMessage());
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }

    private static void closeQuietly(OrtSession s) {
        try {
            s.close();
        } catch (OrtException ignored) {
            // already failing with a better message
        }
    }

    /** The loaded tasks by name, in manifest order (read-only). */
    public Map<String, Task> tasks() {
        return tasks;
    }

    /** The task called {@code name} (null: the plain backbone); TaskException lists the loaded ones. */
    public Task task(String name) {
        if (name == null) {
            return null;
        }
        Task t = tasks.get(name);
        if (t == null) {
            List<Object> names = new ArrayList<>(tasks.keySet());
            names.sort(null);
            throw new TaskException("unknown task " + Py.repr(name) + "; available tasks: " + Py.repr(names)
                    + " (or task=None for the plain backbone)");
        }
        return t;
    }

    /** EOS id of the plain backbone (null: none), from the manifest's tokenizer section. */
    public Integer plainEos() {
        return eos;
    }

    /** Generates a continuation of {@code text} with {@code task} (null: plain backbone); blocks until done. */
    public Decoder.Result generate(String text, String task, GenerationConfig cfg) {
        return generate(text, task, cfg, null);
    }

    /** As {@link #generate(String, String, GenerationConfig)}, handing each piece of text to {@code onText}. */
    public Decoder.Result generate(String text, String task, GenerationConfig cfg, Consumer<String> onText) {
        return generate(text, task, cfg, onText, false);
    }

    /**
     * With {@code chat} (task null only), {@code text} is the user turn of the model's own chat template, the
     * manifest's {@code tokenizer.chat_template} (Python's {@code generate(..., chat=True)}).
     */
    public Decoder.Result generate(String text, String task, GenerationConfig cfg, Consumer<String> onText,
                                   boolean chat) {
        Task t = task(task);
        GenerationConfig c = cfg.withDefaultMax(t != null ? t.maxNewTokens : DEFAULT_MAX_NEW_TOKENS);
        return decode(decoder, encode(text, t, c, chat), t, c, onText);
    }

    /**
     * As {@link #generate(String, String, GenerationConfig, Consumer)}, stopping between tokens once {@code stop}
     * returns true (asked after each piece reached {@code onText}, on the calling thread): no further graph run
     * starts and the result is {@link Decoder.Result#cancelled}. A callback that cancels on its k-th piece gets
     * exactly k pieces.
     */
    public Decoder.Result generate(String text, String task, GenerationConfig cfg, Consumer<String> onText,
                                   BooleanSupplier stop) {
        Task t = task(task);
        GenerationConfig c = cfg.withDefaultMax(t != null ? t.maxNewTokens : DEFAULT_MAX_NEW_TOKENS);
        return decode(decoder, encode(text, t, c, false), t, c, onText, stop);
    }

    /**
     * The app-facing call: generation on {@code executor} (e.g. a single-thread worker), each piece of text to
     * {@code onText} on that thread as it decodes; the returned handle cancels between tokens
     * ({@link Generation#cancel()}, {@code result().cancel(..)} or interrupting the worker) and completes with
     * the {@link Decoder.Result} (or exceptionally with the {@link EdgeVlmException} of a bad input).
     */
    public Generation start(String text, String task, GenerationConfig cfg, Consumer<String> onText,
                            Executor executor) {
        return Generation.start(executor, stop -> generate(text, task, cfg, onText, stop));
    }

    /**
     * The prompt ids of a conversation ({@link Chat}: the plain model's recorded chat format, or a task's turns),
     * every message used: one ConfigException line where {@code task} cannot take the messages or they do not fit
     * the context beside {@code max_new_tokens} (a conversation is never cut silently), as the server's 400s.
     */
    public PromptBuilder.Prompt encodeChat(List<Chat.Message> messages, String task, GenerationConfig cfg) {
        Task t = task(task);
        Chat.Input in = Chat.input(messages, t, manifest);
        PromptBuilder.Prompt p = encode(in.text, t, cfg, in.oneTurn);
        if (p.note != null) {
            throw new ConfigException("messages do not fit the context: " + p.note + "; send fewer or shorter "
                    + "messages, or a smaller max_new_tokens");
        }
        return p;
    }

    /** Generates the reply to a conversation ({@link #encodeChat}), stopping between tokens once {@code stop}. */
    public Decoder.Result generateChat(List<Chat.Message> messages, String task, GenerationConfig cfg,
                                       Consumer<String> onText, BooleanSupplier stop) {
        Task t = task(task);
        GenerationConfig c = cfg.withDefaultMax(t != null ? t.maxNewTokens : DEFAULT_MAX_NEW_TOKENS);
        return decode(decoder, encodeChat(messages, task, c), t, c, onText, stop);
    }

    /** {@link #start} for a conversation: the reply decodes on {@code executor}, cancellable between tokens. */
    public Generation startChat(List<Chat.Message> messages, String task, GenerationConfig cfg,
                                Consumer<String> onText, Executor executor) {
        return Generation.start(executor, stop -> generateChat(messages, task, cfg, onText, stop));
    }

    /** Decodes after already-encoded prompt ids (task tokens as vocab_size + k), cut like Python's _fit. */
    public Decoder.Result generateTokens(List<Integer> prompt, String task, GenerationConfig cfg) {
        return generateTokens(prompt, task, cfg, true);
    }

    /** {@code graphOptions} false: without {@code logits_to_keep} (the prompt's logits at every position; A/B). */
    Decoder.Result generateTokens(List<Integer> prompt, String task, GenerationConfig cfg, boolean graphOptions) {
        Task t = task(task);
        GenerationConfig c = cfg.withDefaultMax(t != null ? t.maxNewTokens : DEFAULT_MAX_NEW_TOKENS);
        if (prompt.isEmpty()) {
            throw new ConfigException("input is empty: the prompt has no tokens");
        }
        int limit = graph.vocabSize + (t != null ? t.specialTokens.size() : 0);
        for (int id : prompt) {
            if (id < 0 || id >= limit) {
                throw new ConfigException("prompt id " + id + " is out of range: ids must be in [0, " + limit
                        + ") for task " + Py.repr(task));
            }
        }
        return decode(graphOptions ? decoder : allLogits, PromptBuilder.fit(prompt, t, c.maxNewTokens, graph), t, c,
                null);
    }

    /** The prompt ids a call would decode after (task tokens as vocab_size + k), cut to fit the context. */
    public PromptBuilder.Prompt encode(String text, Task task, GenerationConfig cfg) {
        return encode(text, task, cfg, false);
    }

    /** As {@link #encode(String, Task, GenerationConfig)}; with {@code chat}, in the chat template's user turn. */
    public PromptBuilder.Prompt encode(String text, Task task, GenerationConfig cfg, boolean chat) {
        GenerationConfig c = cfg.withDefaultMax(task != null ? task.maxNewTokens : DEFAULT_MAX_NEW_TOKENS);
        if (text != null && !Py.strip(text).isEmpty() && chat) { // Python checks the text first, then the template
            return PromptBuilder.encode(tokenizer, graph, task, text, c.maxNewTokens, chatTemplate(task));
        }
        return PromptBuilder.encode(tokenizer, graph, task, text, c.maxNewTokens);
    }

    private String chatTemplate(Task task) {
        if (task != null) {
            throw new ConfigException("chat=True is for task=None (the plain model); task " + Py.repr(task.name)
                    + " has its own template");
        }
        if (manifest.chatTemplate == null) {
            throw new ConfigException("chat=True: " + manifest.where + " has no tokenizer.chat_template (not a chat model)");
        }
        return manifest.chatTemplate;
    }

    private Decoder.Result decode(Decoder d, PromptBuilder.Prompt p, Task t, GenerationConfig c,
                                  Consumer<String> onText) {
        return decode(d, p, t, c, onText, null);
    }

    private Decoder.Result decode(Decoder d, PromptBuilder.Prompt p, Task t, GenerationConfig c,
                                  Consumer<String> onText, BooleanSupplier stop) {
        try {
            return d.run(p.ids, p.note, t, t != null ? t.eosTokenId : eos, c, tokenizer, onText, stop);
        } catch (OrtException e) {
            throw new EdgeVlmException(root + ": ONNX Runtime failed to run the graph (" + firstLine(e) + ")", e);
        }
    }

    /**
     * The decoder keeping each call's cache the shared way (true; the bundle's own where it does) or the concat
     * way (false), both with the graph options: for tests that compare the two.
     */
    Decoder decoder(boolean shared) {
        return shared == decoder.shared() ? decoder
                : new Decoder(OrtEnvironment.getEnvironment(), session, graph, options, shared);
    }

    /** Logits of the prompt's last position, then after each forced token (for parity checks finer than greedy). */
    List<float[]> teacherForced(List<Integer> prompt, List<Integer> forced, String task) {
        try {
            return decoder.teacherForced(prompt, forced, task(task));
        } catch (OrtException e) {
            throw new EdgeVlmException(root + ": ONNX Runtime failed to run the graph (" + firstLine(e) + ")", e);
        }
    }

    /** The shape of the logits of {@code prompt}'s run (no cache) as the graph makes it: [1, 1, V] with the option. */
    long[] prefillShape(List<Integer> prompt, String task) {
        try {
            return decoder.prefillShape(prompt, task(task));
        } catch (OrtException e) {
            throw new EdgeVlmException(root + ": ONNX Runtime failed to run the graph (" + firstLine(e) + ")", e);
        }
    }

    /** Releases the session and the adapters; calls must have finished. */
    @Override
    public void close() {
        tasks.values().forEach(t -> t.adapter.close());
        if (options != null) {
            options.close();
        }
        closeQuietly(session);
    }
}
