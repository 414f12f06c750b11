package io.edgevlm.core;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * Opening the graph in an ONNX Runtime session, as Python's {@code runtime.session.session_options} and
 * {@code open_session}: sequential execution, full graph optimization, one inter-op thread, {@code threads}
 * intra-op threads (null: all cores), worker threads sleeping between kernels unless {@code spin}, then the
 * caller's session config entries ({@code session.*}, {@code optimization.*}, ... as ONNX Runtime names them in
 * {@code onnxruntime_session_options_config_keys.h}; a later entry for a key overrides an earlier one, so an
 * entry may override the spin setting), then the execution providers ({@link Providers}).
 * <p>
 * ONNX Runtime stores any key and reads only the ones it knows: an unknown key is ignored (ONNX Runtime's
 * behaviour, as in Python), a known key with a value it cannot use fails the session; that failure names the entry
 * (each entry is tried alone on the graph to find it) in one line.
 */
final class Sessions {
    static final String SPIN = "session.intra_op.allow_spinning";

    private Sessions() {
    }

    /** An ONNX Runtime session of the graph at {@code path} (BundleException or ConfigException in one line). */
    static OrtSession open(Path path, Integer threads, boolean spin, List<String> providers,
                           Map<String, String> config) {
        try {
            return OrtEnvironment.getEnvironment().createSession(path.toString(), options(threads, spin, providers,
                    config));
        } catch (OrtException e) {
            String bad = refused(path, threads, spin, providers, config);
            if (bad != null) {
                String why = Bundle.firstLine(e); // "Error code - ORT_... - message: ..." -> the message
                throw new ConfigException("session config entry " + bad + " is refused by ONNX Runtime ("
                        + why.substring(why.indexOf("message: ") < 0 ? 0 : why.indexOf("message: ") + 9) + ")");
            }
            throw new BundleException(path + ": ONNX Runtime cannot load the graph (" + Bundle.firstLine(e) + ")");
        }
    }

    /** The session options (Python's {@code session_options(threads, spin)} plus {@code config} entries). */
    static OrtSession.SessionOptions options(Integer threads, boolean spin, List<String> providers,
                                             Map<String, String> config) throws OrtException {
        if (threads != null && threads <= 0) {
            throw new ConfigException("threads must be a positive integer or None (all cores), got " + threads);
        }
        OrtSession.SessionOptions so = new OrtSession.SessionOptions();
        so.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
        so.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
        so.setInterOpNumThreads(1);
        if (threads != null) {
            so.setIntraOpNumThreads(threads);
        }
        if (!config.containsKey(SPIN)) { // (ONNX Runtime would warn that the entry overrides this one)
            so.addConfigEntry(SPIN, spin ? "1" : "0");
        }
        // ORT warns once per optional adapter input; its errors reach the caller as exceptions (one line)
        so.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL);
        for (Map.Entry<String, String> e : config.entrySet()) {
            if (e.getKey() == null || e.getValue() == null || e.getKey().isEmpty()) {
                throw new ConfigException("session config entries must be non-empty key -> value strings, got "
                        + Py.repr(e.getKey()) + ": " + Py.repr(e.getValue()));
            }
            so.addConfigEntry(e.getKey(), e.getValue());
        }
        Providers.add(so, providers);
        return so;
    }

    /** 'key'='value' of the first entry that fails the session alone (null: none does, or no entries). */
    private static String refused(Path path, Integer threads, boolean spin, List<String> providers,
                                  Map<String, String> config) {
        for (Map.Entry<String, String> e : config.entrySet()) {
            try (OrtSession.SessionOptions so = options(threads, spin, providers,
                    Collections.singletonMap(e.getKey(), e.getValue()));
                 OrtSession s = OrtEnvironment.getEnvironment().createSession(path.toString(), so)) {
                s.getNumInputs(); // opened: not this entry
            } catch (OrtException x) {
                return Py.repr(e.getKey()) + "=" + Py.repr(e.getValue());
            }
        }
        return null;
    }
}
