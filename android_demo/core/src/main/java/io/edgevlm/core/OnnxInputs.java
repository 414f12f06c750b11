package io.edgevlm.core;

import java.io.EOFException;
import java.io.IOException;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The graph inputs of an ONNX file that have a default initializer (ONNX Runtime's "overridable initializers":
 * what Python's {@code session.get_overridable_initializers()} lists and the Java API does not expose), with their
 * declared element type and dims. A streaming protobuf scan of ModelProto.graph: the input list (field 11) and the
 * initializers' names (field 5); tensor data is skipped over, never read.
 */
final class OnnxInputs {
    /** A declared input: ONNX element type (7 = int64) and dims (Long, String for a symbolic dim, or null). */
    static final class Declared {
        final int elemType;
        final List<Object> dims;

        Declared(int elemType, List<Object> dims) {
            this.elemType = elemType;
            this.dims = dims;
        }
    }

    private final FileChannel ch;
    private final ByteBuffer buf = ByteBuffer.allocate(1 << 16);
    private long bufStart;
    private long pos;

    private OnnxInputs(FileChannel ch) {
        this.ch = ch;
        // (Buffer): JDK 9+ javac links ByteBuffer's covariant overrides, missing on Android API 26 (animal-sniffer)
        ((Buffer) buf).limit(0);
    }

    /** Inputs of {@code path}'s main graph that have an initializer, by name in graph order. */
    static Map<String, Declared> optional(Path path) throws IOException {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            return new OnnxInputs(ch).model(ch.size());
        }
    }

    private Map<String, Declared> model(long end) throws IOException {
        while (pos < end) {
            long tag = varint();
            if (tag == (7 << 3 | 2)) { // ModelProto.graph
                long len = varint();
                return graph(pos + len);
            }
            skip(tag);
        }
        throw new IOException("no graph in the model");
    }

    private Map<String, Declared> graph(long end) throws IOException {
        Map<String, Declared> inputs = new LinkedHashMap<>();
        Set<String> initialized = new HashSet<>();
        while (pos < end) {
            long tag = varint();
            if (tag == (5 << 3 | 2)) { // GraphProto.initializer (TensorProto: name = 8)
                long stop = varint() + pos;
                initialized.add(stringField(stop, 8));
                pos = stop;
            } else if (tag == (11 << 3 | 2)) { // GraphProto.input (ValueInfoProto)
                long stop = varint() + pos;
                valueInfo(stop, inputs);
            } else {
                skip(tag);
            }
        }
        inputs.keySet().retainAll(initialized);
        return inputs;
    }

    /** ValueInfoProto{name = 1, type = 2: TypeProto{tensor_type = 1}} into {@code out}. */
    private void valueInfo(long end, Map<String, Declared> out) throws IOException {
        String name = null;
        Declared d = new Declared(0, null);
        while (pos < end) {
            long tag = varint();
            if (tag == (1 << 3 | 2)) {
                name = string();
            } else if (tag == (2 << 3 | 2)) {
                long stop = varint() + pos;
                if (seek(stop, 1 << 3 | 2)) { // TypeProto.tensor_type
                    d = tensorType(varint() + pos);
                }
                pos = stop;
            } else {
                skip(tag);
            }
        }
        if (name != null) {
            out.put(name, d);
        }
    }

    /** TypeProto.Tensor{elem_type = 1, shape = 2: TensorShapeProto{dim = 1}} ending at {@code end}. */
    private Declared tensorType(long end) throws IOException {
        int elem = 0;
        List<Object> dims = null;
        while (pos < end) {
            long tag = varint();
            if (tag == (1 << 3)) {
                elem = (int) varint();
            } else if (tag == (2 << 3 | 2)) {
                long stop = varint() + pos;
                dims = new ArrayList<>();
                while (pos < stop) {
                    long t = varint();
                    if (t == (1 << 3 | 2)) { // TensorShapeProto.dim
                        dims.add(dimension(varint() + pos));
                    } else {
                        skip(t);
                    }
                }
            } else {
                skip(tag);
            }
        }
        return new Declared(elem, dims);
    }

    /** TensorShapeProto.Dimension{dim_value = 1, dim_param = 2}: Long, String, or null when neither. */
    private Object dimension(long end) throws IOException {
        Object dim = null;
        while (pos < end) {
            long tag = varint();
            if (tag == (1 << 3)) {
                dim = varint();
            } else if (tag == (2 << 3 | 2)) {
                dim = string();
            } else {
                skip(tag);
            }
        }
        return dim;
    }

    /** The string field {@code field} of the message ending at {@code end} (null when absent). */
    private String stringField(long end, int field) throws IOException {
        return seek(end, field << 3 | 2) ? string() : null;
    }

    /** Skips fields up to the first with {@code tag} before {@code end}; true with the position after that tag. */
    private boolean seek(long end, long tag) throws IOException {
        while (pos < end) {
            long t = varint();
            if (t == tag) {
                return true;
            }
            skip(t);
        }
        return false;
    }

    private String string() throws IOException {
        long len = varint();
        if (len > 1 << 20) {
            throw new IOException("a name of " + len + " bytes");
        }
        byte[] out = new byte[(int) len];
        for (int k = 0; k < out.length; k++) {
            out[k] = (byte) next();
        }
        return new String(out, StandardCharsets.UTF_8);
    }

    private void skip(long tag) throws IOException {
        switch ((int) (tag & 7)) {
            case 0: varint(); break;
            case 1: pos += 8; break;
            case 2: long n = varint(); pos += n; break; // not pos += varint(): pos would be read first
            case 5: pos += 4; break;
            default: throw new IOException("unsupported protobuf wire type " + (tag & 7) + " at byte " + pos);
        }
    }

    private long varint() throws IOException {
        long r = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            int b = next();
            r |= (long) (b & 0x7f) << shift;
            if (b < 0x80) {
                return r;
            }
        }
        throw new IOException("malformed varint at byte " + pos);
    }

    private int next() throws IOException {
        if (pos < bufStart || pos >= bufStart + buf.limit()) {
            ((Buffer) buf).clear();
            bufStart = pos;
            while (buf.hasRemaining() && ch.read(buf, bufStart + buf.position()) > 0) {
                // fill the window from pos
            }
            ((Buffer) buf).flip();
            if (buf.limit() == 0) {
                throw new EOFException("the file ends inside a message");
            }
        }
        return buf.get((int) (pos++ - bufStart)) & 0xff;
    }
}
