package io.edgevlm.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The command line as the bytes the process was given (Linux and Android: {@code /proc/self/cmdline}), decoded
 * strictly as UTF-8: the JVM decodes {@code main}'s arguments with the locale's charset and replaces what it
 * cannot decode, so "\xff" would be answered as "?" or U+FFFD where Python refuses it.
 */
final class Args {
    final String[] text;
    /** Each argument's raw bytes (null: not known, the JVM's decoding is used as it is). */
    private final byte[][] raw;

    Args(String[] text, byte[][] raw) {
        this.text = text;
        this.raw = raw;
    }

    /** {@code args} re-read from the process's own command line where its last entries are the arguments. */
    static Args of(String[] args) {
        byte[][] raw = new byte[args.length][];
        String[] text = args.clone();
        List<byte[]> all = cmdline();
        if (all.size() >= args.length) {
            for (int k = 0; k < args.length; k++) {
                raw[k] = all.get(all.size() - args.length + k);
                if (Utf8Check.first(raw[k], raw[k].length) == null) {
                    text[k] = new String(raw[k], StandardCharsets.UTF_8);
                }
            }
        }
        return new Args(text, raw);
    }

    private static List<byte[]> cmdline() {
        List<byte[]> out = new ArrayList<>();
        byte[] b;
        try {
            b = Files.readAllBytes(Paths.get("/proc/self/cmdline"));
        } catch (IOException | RuntimeException e) {
            return out; // not Linux: the JVM's decoding stands
        }
        int start = 0;
        for (int k = 0; k < b.length; k++) {
            if (b[k] == 0) {
                out.add(Arrays.copyOfRange(b, start, k));
                start = k + 1;
            }
        }
        return out;
    }

    /**
     * Refuses an argument that is not UTF-8, as Python does: the input with the runtime's message (the index of
     * the first undecodable character), any other argument naming it.
     */
    void check(String[] args, List<String> positional) {
        for (int k = 0; k < args.length; k++) {
            Utf8Check.Error bad = raw[k] == null ? null : Utf8Check.first(raw[k], raw[k].length);
            if (bad == null) {
                continue;
            }
            int at = Utf8Check.charsBefore(raw[k], bad.start);
            if (positional.size() > 1 && positional.get(1) == args[k] && positional.indexOf(args[k]) == 1) {
                throw new ConfigException("input is not valid UTF-8 text (undecodable byte at character " + at + ")");
            }
            throw new ConfigException("argument " + (k + 1) + " is not valid UTF-8 text (undecodable byte at character "
                    + at + ")");
        }
    }
}
