package io.edgevlm.core;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtProvider;
import ai.onnxruntime.OrtSession;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * ONNX Runtime execution providers by their ONNX Runtime names, as Python's {@code runtime.session.providers_for}
 * takes them: each must be in this build ({@link OrtEnvironment#getAvailableProviders()}), else one
 * ConfigException line listing the ones it has. The CPU provider is always last (ONNX Runtime's fallback).
 */
final class Providers {
    private Providers() {
    }

    static List<String> available() {
        List<String> names = new ArrayList<>();
        for (OrtProvider p : OrtEnvironment.getAvailableProviders()) {
            names.add(p.getName());
        }
        Collections.sort(names);
        return names;
    }

    static void add(OrtSession.SessionOptions so, List<String> providers) throws OrtException {
        List<String> available = available();
        for (String name : providers) {
            if (!available.contains(name)) {
                throw new ConfigException("execution provider " + Py.repr(name)
                        + " is not in this ONNX Runtime build; available: " + Py.repr(available));
            }
            switch (name) {
                case "CPUExecutionProvider": break;
                case "XnnpackExecutionProvider": so.addXnnpack(Collections.emptyMap()); break;
                case "NnapiExecutionProvider": so.addNnapi(); break;
                case "CoreMLExecutionProvider": so.addCoreML(); break;
                default:
                    throw new ConfigException("execution provider " + Py.repr(name) + " is in this build but the Java"
                            + " core wires only CPU, XNNPACK, NNAPI and CoreML");
            }
        }
    }
}
