package io.edgevlm.core;

import java.io.IOException;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads the parameter names, shapes and types of an ONNX Runtime adapter file ({@code .onnx_adapter}, a
 * FlatBuffer with identifier "TORT": Adapter{format_version, adapter_version, model_version, parameters},
 * Parameter{name, dims, data_type, raw_data}). The Java API can load such a file but not list its tensors,
 * which the bundle check needs before trusting it (Python uses {@code onnxruntime.AdapterFormat}).
 */
public final class AdapterFile {
    /** One adapter tensor: ONNX element type (1 = float), shape and its raw little-endian bytes. */
    public static final class Param {
        public final int dataType;
        public final List<Long> shape;
        public final byte[] raw;

        Param(int dataType, List<Long> shape, byte[] raw) {
            this.dataType = dataType;
            this.shape = shape;
            this.raw = raw;
        }
    }

    /** The identity record edgevlm appends after the FlatBuffer (Python's {@code identity.adapter_trailer}). */
    public static final class Identity {
        public final String fingerprint;
        public final String task;

        Identity(String fingerprint, String task) {
            this.fingerprint = fingerprint;
            this.task = task;
        }
    }

    static final byte[] MAGIC = "EVLMID01".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    static final int MAX_RECORD = 4096;

    private static final String[] TYPE_NAMES = {"undefined", "float", "uint8", "int8", "uint16", "int16", "int32",
        "int64", "string", "bool", "float16", "double", "uint32", "uint64", "complex64", "complex128", "bfloat16"};

    private final ByteBuffer b;

    private AdapterFile(ByteBuffer b) {
        this.b = b;
    }

    /** The ONNX type name of an element type, as onnxruntime prints it: {@code tensor(float)}. */
    public static String typeName(int t) {
        return "tensor(" + (t >= 0 && t < TYPE_NAMES.length ? TYPE_NAMES[t] : "type" + t) + ")";
    }

    /** Parameters by name in file order; IOException (one line) when the file is not an adapter file. */
    public static Map<String, Param> read(Path path) throws IOException {
        byte[] data = Files.readAllBytes(path);
        ByteBuffer b = ByteBuffer.wrap(data, 0, flatBufferEnd(data, path)).slice().order(ByteOrder.LITTLE_ENDIAN);
        try {
            return new AdapterFile(b).params();
        } catch (IndexOutOfBoundsException | IllegalArgumentException | java.nio.BufferUnderflowException
                 | NegativeArraySizeException e) {
            throw new IOException("malformed adapter FlatBuffer (" + e.getMessage() + ")");
        }
    }

    /** Whether {@code d} ends with {@code tail} (Arrays.equals on ranges is not on Android API 26). */
    private static boolean endsWith(byte[] d, byte[] tail) {
        for (int k = 0; k < tail.length; k++) {
            if (d[d.length - tail.length + k] != tail[k]) {
                return false;
            }
        }
        return true;
    }

    /** Bytes before the identity trailer (the whole file when it has none); BundleException for a cut one. */
    private static int flatBufferEnd(byte[] d, Path path) {
        int n = d.length;
        if (n < 12 || !endsWith(d, MAGIC)) {
            return n;
        }
        long len = ByteBuffer.wrap(d, n - 12, 4).order(ByteOrder.LITTLE_ENDIAN).getInt() & 0xffffffffL;
        if (len > MAX_RECORD || len > n - 12) {
            throw new BundleException(path + ": adapter identity record of " + len + " bytes does not fit the file");
        }
        return n - 12 - (int) len;
    }

    /** The file's identity record, null when it has none (Python's {@code identity.split_adapter}). */
    public static Identity identity(Path path) throws IOException {
        byte[] d = Files.readAllBytes(path);
        int start = flatBufferEnd(d, path);
        if (start == d.length) {
            return null;
        }
        Object rec;
        try {
            rec = Json.parse(java.nio.charset.StandardCharsets.UTF_8.newDecoder()
                    .decode(ByteBuffer.wrap(d, start, d.length - 12 - start)).toString());
        } catch (IllegalArgumentException | java.nio.charset.CharacterCodingException e) {
            rec = null;
        }
        if (!(rec instanceof Map) || !(((Map<?, ?>) rec).get("backbone_fingerprint") instanceof String)
                || !(((Map<?, ?>) rec).get("task") instanceof String)) {
            throw new BundleException(path + ": adapter identity record is not a JSON object with backbone_fingerprint"
                    + " and task");
        }
        Map<?, ?> m = (Map<?, ?>) rec;
        return new Identity((String) m.get("backbone_fingerprint"), (String) m.get("task"));
    }

    private Map<String, Param> params() throws IOException {
        if (b.capacity() < 8 || b.get(4) != 'T' || b.get(5) != 'O' || b.get(6) != 'R' || b.get(7) != 'T') {
            throw new IOException("no TORT file identifier");
        }
        int root = b.getInt(0);
        int vec = field(root, 3);
        Map<String, Param> out = new LinkedHashMap<>();
        if (vec == 0) {
            return out;
        }
        int at = deref(vec);
        int n = b.getInt(at);
        for (int k = 0; k < n; k++) {
            int elem = at + 4 + 4 * k;
            int table = elem + b.getInt(elem);
            int nameField = field(table, 0);
            if (nameField == 0) {
                throw new IOException("parameter " + k + " has no name");
            }
            int s = deref(nameField);
            byte[] name = new byte[b.getInt(s)];
            ByteBuffer dup = b.duplicate(); // not get(int, byte[]): that needs Android API 35
            // (Buffer): JDK 9+ javac links ByteBuffer's covariant overrides, missing on Android API 26 (animal-sniffer)
            ((Buffer) dup).position(s + 4);
            dup.get(name);
            List<Long> shape = new ArrayList<>();
            int dims = field(table, 1);
            if (dims != 0) {
                int d = deref(dims);
                for (int j = 0; j < b.getInt(d); j++) {
                    shape.add(b.getLong(d + 4 + 8 * j));
                }
            }
            int typeField = field(table, 2);
            int type = typeField == 0 ? 0 : b.getInt(typeField);
            int rawField = field(table, 3);
            byte[] raw = new byte[0];
            if (rawField != 0) {
                int r = deref(rawField);
                raw = new byte[b.getInt(r)]; // NegativeArraySize or BufferUnderflow for a corrupt length: malformed
                ByteBuffer rd = b.duplicate();
                ((Buffer) rd).position(r + 4); // Buffer.position: ByteBuffer.position(int) is not on API 26
                rd.get(raw);
            }
            out.put(new String(name, java.nio.charset.StandardCharsets.UTF_8), new Param(type, shape, raw));
        }
        return out;
    }

    /** Absolute position of field {@code index} of the table at {@code table}, 0 when absent. */
    private int field(int table, int index) {
        int vtable = table - b.getInt(table);
        int vsize = Short.toUnsignedInt(b.getShort(vtable));
        int slot = 4 + 2 * index;
        if (slot >= vsize) {
            return 0;
        }
        int off = Short.toUnsignedInt(b.getShort(vtable + slot));
        return off == 0 ? 0 : table + off;
    }

    private int deref(int pos) {
        return pos + b.getInt(pos);
    }
}
