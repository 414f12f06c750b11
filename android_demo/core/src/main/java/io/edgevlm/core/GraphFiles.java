package io.edgevlm.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The external data files a graph names (every TensorProto's {@code location}, in the main graph, functions,
 * subgraphs and sparse tensors), read from the mapped file without parsing the weights, and checked as Python's
 * {@code session.check_external_data} checks them before ONNX Runtime opens the graph: relative, inside the
 * graph's folder, present, and one of the manifest's checksummed files (ORT maps whatever the graph names).
 */
final class GraphFiles {
    // message kind -> {field number -> message kind} for the fields that may hold a TensorProto
    private static final Map<String, Map<Integer, String>> SCHEMA = Map.of(
            "model", Map.of(7, "graph", 25, "function"),
            "function", Map.of(7, "node"),
            "graph", Map.of(1, "node", 5, "tensor", 15, "sparse"),
            "node", Map.of(5, "attribute"),
            "attribute", Map.of(5, "tensor", 6, "graph", 10, "tensor", 11, "graph", 22, "sparse", 23, "sparse"),
            "sparse", Map.of(1, "tensor", 2, "tensor"),
            "tensor", Map.of(13, "entry"));
    private static final int MAX_DEPTH = 500; // subgraphs nested deeper: refused like Python's RecursionError

    private final ByteBuffer b;

    private GraphFiles(ByteBuffer b) {
        this.b = b;
    }

    /** Python's {@code check_external_data(path, listed)}; {@code listed}: the manifest's files, resolved. */
    static void check(Path path, Set<Path> listed) {
        Path folder = Manifest.resolve(path.getParent());
        for (String loc : locations(path)) {
            Path full = null;
            try {
                full = Manifest.resolve(folder.resolve(loc));
            } catch (InvalidPathException e) {
                full = null;
            }
            if (loc.isEmpty() || loc.startsWith("/") || loc.contains("\\") || full == null || !full.startsWith(folder)) {
                throw new BundleException(path + ": external data location " + Py.repr(loc)
                        + " must be a relative path inside " + folder);
            }
            if (!Files.isRegularFile(folder.resolve(loc))) {
                throw new BundleException(path + ": external data file " + Py.repr(loc) + " not found next to the graph");
            }
            if (!listed.contains(full)) {
                throw new BundleException(path + ": external data file " + Py.repr(loc)
                        + " has no checksum in the manifest's files; refused");
            }
        }
    }

    /** The sorted set of locations; BundleException for a file that is not an ONNX protobuf. */
    static Set<String> locations(Path path) {
        Set<String> out = new TreeSet<>();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            if (ch.size() == 0 || ch.size() > Integer.MAX_VALUE) {
                throw new IOException(ch.size() == 0 ? "cannot mmap an empty file" : "larger than 2 GB");
            }
            ByteBuffer map = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
            new GraphFiles(map).walk("model", 0, map.capacity(), out, 0);
        } catch (IOException e) {
            throw new BundleException(path + ": not a readable ONNX graph (" + e.getMessage() + ")");
        }
        return out;
    }

    private void walk(String kind, int start, int end, Set<String> out, int depth) throws IOException {
        if (depth > MAX_DEPTH) {
            throw new IOException("subgraphs nested too deeply");
        }
        if (kind.equals("entry")) {
            String key = null;
            String value = "";
            for (int[] f : fields(start, end)) {
                if (f[0] == 1) {
                    key = text(f[1], f[2]);
                } else if (f[0] == 2) {
                    value = text(f[1], f[2]);
                }
            }
            if ("location".equals(key)) {
                out.add(value);
            }
            return;
        }
        Map<Integer, String> sub = SCHEMA.get(kind);
        for (int[] f : fields(start, end)) {
            String k = sub.get(f[0]);
            if (k != null) {
                walk(k, f[1], f[2], out, depth + 1);
            }
        }
    }

    private String text(int a, int z) {
        byte[] s = new byte[z - a];
        ByteBuffer d = b.duplicate();
        ((java.nio.Buffer) d).position(a); // Buffer.position: ByteBuffer.position(int) is not on API 26
        d.get(s);
        return new String(s, StandardCharsets.UTF_8); // invalid bytes replaced, as Python's "replace"
    }

    /** (field number, start, end) of each length-delimited field of the message b[start, end). */
    private java.util.List<int[]> fields(int start, int end) throws IOException {
        java.util.List<int[]> out = new java.util.ArrayList<>();
        int[] i = {start};
        while (i[0] < end) {
            long key = varint(i);
            int wire = (int) (key & 7);
            if (wire == 2) {
                long n = varint(i);
                if (i[0] + n > end) {
                    throw new IOException("field runs past its message");
                }
                out.add(new int[] {(int) (key >>> 3), i[0], (int) (i[0] + n)});
                i[0] += (int) n;
            } else if (wire == 0) {
                varint(i);
            } else if (wire == 1 || wire == 5) {
                i[0] += wire == 1 ? 8 : 4;
            } else {
                throw new IOException("wire type " + wire);
            }
        }
        return out;
    }

    private long varint(int[] i) throws IOException {
        long value = 0;
        for (int shift = 0; ; shift += 7) {
            if (i[0] >= b.capacity() || shift > 63) {
                throw new IOException("truncated varint");
            }
            int x = b.get(i[0]++) & 0xff;
            value |= (long) (x & 0x7f) << shift;
            if (x < 0x80) {
                return value;
            }
        }
    }
}
