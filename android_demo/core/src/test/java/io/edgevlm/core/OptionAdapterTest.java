package io.edgevlm.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.onnxruntime.OrtLoraAdapter;
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
        for (String name : List.of(Names.LOGITS_TO_KEEP, "x", "an option name of odd length")) {
            byte[] bytes = OptionAdapter.int64(name, 1);
            Path f = Files.write(tmp.resolve("o.onnx_adapter"), bytes);
            Map<String, AdapterFile.Param> params = AdapterFile.read(f);
            assertEquals(List.of(name), List.copyOf(params.keySet()), "one parameter, by name");
            assertEquals(7, params.get(name).dataType, "int64");
            assertEquals(List.of(1L), params.get(name).shape, "dims [1]");
            try (OrtLoraAdapter a = OrtLoraAdapter.create(bytes)) { // ORT verifies the FlatBuffer here
                assertEquals(OrtLoraAdapter.class, a.getClass());
            }
        }
    }
}
