package io.edgevlm.core;

import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoraAdapter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * A manifest task entry (fields already checked by {@link Manifest}) with its adapter file: the file's tensors
 * against the graph and the entry's bottleneck and task-token count against the file, with the same one-line
 * messages as Python's {@code load_task} / {@code check_adapter_against_graph}; only then is the file loaded,
 * once, as an {@code OrtLoraAdapter}.
 */
final class TaskLoader {
    private TaskLoader() {
    }

    static Task load(String name, TaskEntry entry, Path path, GraphInfo g, String source, String fingerprint)
            throws OrtException {
        String where = source + ": tasks." + name;
        int[] sizes = checkAdapter(path, g, fingerprint, name, entry.method.equals("lora"));
        if (entry.bottleneck != sizes[0]) {
            throw new BundleException(where + ".bottleneck is " + entry.bottleneck + " but " + path.getFileName()
                    + " has bottleneck " + sizes[0]);
        }
        if (sizes[1] != entry.specialTokens.size()) {
            throw new BundleException(where + " has " + entry.specialTokens.size() + " special tokens but "
                    + path.getFileName() + " has " + sizes[1] + " task embeddings");
        }
        OrtLoraAdapter adapter = OrtLoraAdapter.create(path.toString());
        return new Task(name, entry.bottleneck, entry.specialTokens, entry.template, entry.eosTokenId,
                entry.maxNewTokens, entry.maxSourceTokens, path, adapter);
    }

    /**
     * The adapter's identity record (this backbone's {@code fingerprint}, task {@code task}), its tensors against
     * the graph's adapter inputs (a LoRA task's: its LoRA inputs), then their values; returns {bottleneck or LoRA
     * rank, task tokens}.
     */
    static int[] checkAdapter(Path path, GraphInfo g, String fingerprint, String task, boolean lora) {
        if (!Files.isRegularFile(path)) {
            throw new BundleException(path + ": adapter file not found");
        }
        Map<String, AdapterFile.Param> params;
        AdapterFile.Identity id;
        try {
            params = AdapterFile.read(path);
            id = AdapterFile.identity(path);
        } catch (IOException e) {
            throw new BundleException(path + ": not a readable ONNX Runtime adapter file (" + e.getMessage() + ")");
        }
        checkIdentity(path, id, fingerprint, task);
        int[] sizes = checkShapes(path, g, params, lora);
        for (Map.Entry<String, AdapterFile.Param> e : params.entrySet()) {
            Values.check(path + ": tensor " + e.getKey(), e.getValue().raw);
        }
        return sizes;
    }

    /** Python's {@code identity.check_adapter_identity}, message for message. */
    static void checkIdentity(Path path, AdapterFile.Identity id, String fingerprint, String task) {
        if (id == null) {
            throw new BundleException(path + ": the adapter file carries no backbone identity (older export); "
                    + Values.REEXPORT);
        }
        if (!id.fingerprint.equals(fingerprint)) {
            throw new BundleException(path + ": the adapter file was exported for backbone " + Py.repr(id.fingerprint)
                    + ", not this one (" + Py.repr(fingerprint) + ")");
        }
        if (!id.task.equals(task)) {
            throw new BundleException(path + ": the adapter file is task " + Py.repr(id.task) + ", not "
                    + Py.repr(task));
        }
    }

    private static int[] checkShapes(Path path, GraphInfo g, Map<String, AdapterFile.Param> params, boolean lora) {
        for (Map.Entry<String, AdapterFile.Param> e : params.entrySet()) {
            if (e.getValue().dataType != 1) {
                throw new BundleException(path + ": adapter tensors must be float32, " + e.getKey() + " is "
                        + AdapterFile.typeName(e.getValue().dataType));
            }
        }
        List<String> expected = lora ? new ArrayList<>(g.loraInputs.keySet()) : g.adapterInputs;
        if (lora && expected.isEmpty()) {
            throw new BundleException(path + ": a LoRA task but the graph has no LoRA inputs (export it with --lora)");
        }
        Set<String> missing = new TreeSet<>(expected);
        missing.removeAll(params.keySet());
        Set<String> unknown = new TreeSet<>(params.keySet());
        unknown.removeAll(expected);
        if (!missing.isEmpty() || !unknown.isEmpty()) {
            throw new BundleException(path + ": adapter does not match the graph (missing " + first3(missing)
                    + ", not graph inputs " + first3(unknown) + ")");
        }
        Map<String, Long> bound = new HashMap<>();
        for (String name : expected) {
            List<Long> got = params.get(name).shape;
            List<Object> decl = lora ? g.loraInputs.get(name) : Names.symbolicAdapterShape(name, g.nEmbd);
            if (got.size() != decl.size()) {
                throw new BundleException(path + ": " + name + " has rank " + got.size() + ", the graph expects " + Py.repr(decl));
            }
            for (int k = 0; k < got.size(); k++) {
                Object d = decl.get(k);
                if (d instanceof Long && (Long) d > 0 && !got.get(k).equals(d)) {
                    throw new BundleException(path + ": " + name + " has shape " + Py.repr(got) + ", the graph expects "
                            + Py.repr(decl));
                }
                if (d instanceof String) {
                    Long prev = bound.putIfAbsent((String) d, got.get(k));
                    if (prev != null && !prev.equals(got.get(k))) {
                        throw new BundleException(path + ": " + name + " has " + d + "=" + got.get(k)
                                + " but another tensor has " + d + "=" + prev);
                    }
                }
            }
        }
        if (lora) {
            if (!Long.valueOf(1L).equals(bound.get("lora_rows"))) {
                throw new BundleException(path + ": LoRA tensors must have lora_rows=1 (one task)");
            }
            long rank = 0;
            for (Map.Entry<String, Long> e : bound.entrySet()) {
                rank = e.getKey().startsWith("lora_rank") ? Math.max(rank, e.getValue()) : rank;
            }
            return new int[] {(int) rank, 0};
        }
        return new int[] {(int) (long) bound.getOrDefault(Names.BOTTLENECK_DIM, 0L),
            (int) (long) bound.getOrDefault(Names.TASK_TOKENS_DIM, 0L)};
    }

    private static String first3(Set<String> s) {
        return Py.repr(new ArrayList<Object>(new ArrayList<>(s).subList(0, Math.min(3, s.size()))));
    }
}
