package io.edgevlm.core;

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** Bundles loaded once per test JVM (loading is what the runtime does once per app start, too). */
final class Shared {
    private static final Map<Path, Bundle> BUNDLES = new ConcurrentHashMap<>();

    private Shared() {
    }

    static Bundle bundle(Path dir) {
        return BUNDLES.computeIfAbsent(dir, d -> Bundle.load(d, 1, false));
    }
}
