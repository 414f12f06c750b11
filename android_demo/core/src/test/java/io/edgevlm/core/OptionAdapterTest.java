package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.onnxruntime.OrtLoraAdapter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The graph-option adapter file: read back by {@link AdapterFile} and accepted by ONNX Runtime (fixture-free). */
class OptionAdapterTest {
    @Test
    void oneInt64TensorThatOnnxRuntimeLoads(@TempDir Path tmp) throws Exception {
        long[] values = {1L, -3L, Long.MAX_VALUE};
        List<String> names = List.of(Names.LOGITS_TO_KEEP, "x", "an option name of odd length");
        for (int k = 0; k < names.size(); k++) {
            String name = names.get(k);
            byte[] bytes = OptionAdapter.int64(name, values[k]);
            Path f = Files.write(tmp.resolve("o.onnx_adapter"), bytes);
            Map<String, AdapterFile.Param> params = AdapterFile.read(f);
            assertEquals(List.of(name), List.copyOf(params.keySet()), "one parameter, by name");
            assertEquals(7, params.get(name).dataType, "int64");
            assertEquals(List.of(1L), params.get(name).shape, "dims [1]");
            assertEquals(values[k], ByteBuffer.wrap(params.get(name).raw).order(ByteOrder.LITTLE_ENDIAN).getLong(),
                    "the value, read back by the reader that reads ORT's own files");
            assertDoesNotThrow(() -> OrtLoraAdapter.create(bytes).close(), "ONNX Runtime verifies the FlatBuffer");
        }
    }
}
