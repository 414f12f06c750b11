package io.edgevlm.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * An ONNX Runtime adapter file ({@code .onnx_adapter} FlatBuffer, the layout {@link AdapterFile} reads) holding one
 * int64 tensor [1]: how the Java core feeds a graph option such as {@code logits_to_keep}. The Java API refuses to
 * feed a graph input that has a default initializer ("Unknown input name"), but ONNX Runtime accepts one from an
 * active adapter, the same way each task's adapter tensors reach the graph.
 */
final class OptionAdapter {
    private static final int FORMAT_VERSION = 1; // onnxruntime's adapters::kAdapterFormatVersion
    private static final int INT64 = 7; // TensorDataType

    private OptionAdapter() {
    }

    /** The FlatBuffer bytes: Adapter{format_version 1, parameters: [Parameter{name, dims [1], INT64, raw_data}]}. */
    static byte[] int64(String name, long value) {
        byte[] utf8 = name.getBytes(StandardCharsets.UTF_8);
        int nameAt = 80;
        int dimsAt = align(nameAt + 4 + utf8.length + 1, 8) + 4; // vector length 4 bytes before 8-aligned data
        int rawAt = dimsAt + 4 + 8 + 4; // the same: length at 4 mod 8, data 8-aligned
        ByteBuffer b = ByteBuffer.allocate(rawAt + 4 + 8).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(0, 20).put(4, (byte) 'T').put(5, (byte) 'O').put(6, (byte) 'R').put(7, (byte) 'T');
        vtable(b, 8, 20);
        b.putInt(20, 20 - 8).putInt(24, FORMAT_VERSION).putInt(28, 0).putInt(32, 0).putInt(36, 40 - 36);
        b.putInt(40, 1).putInt(44, 60 - 44); // parameters: one table at 60
        vtable(b, 48, 20);
        b.putInt(60, 60 - 48).putInt(64, nameAt - 64).putInt(68, dimsAt - 68).putInt(72, INT64).putInt(76, rawAt - 76);
        b.putInt(nameAt, utf8.length);
        for (int k = 0; k < utf8.length; k++) {
            b.put(nameAt + 4 + k, utf8[k]); // then the NUL terminator (allocate zeroes)
        }
        b.putInt(dimsAt, 1).putLong(dimsAt + 4, 1L);
        b.putInt(rawAt, 8).putLong(rawAt + 4, value);
        return b.array();
    }

    /** A vtable of 4 fields at {@code at} for a table of {@code size} bytes: soffset + four 4-byte fields. */
    private static void vtable(ByteBuffer b, int at, int size) {
        b.putShort(at, (short) 12).putShort(at + 2, (short) size);
        for (int k = 0; k < 4; k++) {
            b.putShort(at + 4 + 2 * k, (short) (4 + 4 * k));
        }
    }

    private static int align(int n, int a) {
        return (n + a - 1) / a * a;
    }
}
