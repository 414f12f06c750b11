package io.edgevlm.core;

import java.io.BufferedInputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code java -jar edgevlm-core.jar BUNDLE --task NAME "input"} (or {@code --plain}, {@code --list}): the Java
 * twin of {@code edgevlm run}, streaming the output to stdout. Without an input it reads one input per line.
 * Errors are one line on stderr and exit code 2, as in the Python CLI.
 */
public final class Cli {
    private Cli() {
    }

    public static void main(String[] args) {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try {
            System.exit(run(Args.of(args), out));
        } catch (EdgeVlmException e) {
            System.err.println("edgevlm-core: error: " + e.getMessage());
            System.exit(2);
        }
    }

    static final String USAGE = "usage: java -jar edgevlm-core.jar BUNDLE (--task NAME | --plain [--chat] | --list) [--max-new-tokens N]"
            + " [--min-new-tokens N] [--sample [--temperature T] [--top-k K] [--top-p P] [--seed S]] [--stop STR]..."
            + " [--threads N] [--spin] [--provider NAME]... [--graph onnx|ort] [--session-config KEY=VALUE]..."
            + " [--message ROLE:TEXT... | --messages FILE.json | INPUT]";

    static int run(String[] args, PrintStream out) {
        return run(new Args(args, new byte[args.length][]), out);
    }

    static int run(Args raw, PrintStream out) {
        String[] args = raw.text;
        String bundle = null;
        String input = null;
        String task = null;
        boolean plain = false;
        boolean chat = false;
        boolean list = false;
        boolean spin = false;
        java.util.List<String> providers = new java.util.ArrayList<>();
        String graph = "onnx";
        java.util.Map<String, String> sessionConfig = new java.util.LinkedHashMap<>();
        List<Chat.Message> messages = new ArrayList<>();
        String messagesFile = null;
        Integer threads = null;
        GenerationConfig.Builder b = GenerationConfig.builder();
        double temp = 1.0;
        double topP = 1.0;
        int topK = 0;
        Long seed = null;
        boolean sample = false;
        List<String> positional = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--task": task = value(args, ++i, a); break;
                case "--plain": plain = true; break;
                case "--chat": chat = true; break; // the input is the user turn of the model's chat template
                case "--list": list = true; break;
                case "--spin": spin = true; break;
                case "--provider": providers.add(value(args, ++i, a)); break;
                case "--graph": graph = value(args, ++i, a); break;
                case "--session-config": keyValue(value(args, ++i, a), sessionConfig); break;
                case "--message": messages.add(ChatInput.message(value(args, ++i, a))); break;
                case "--messages": messagesFile = value(args, ++i, a); break;
                case "--sample": sample = true; break;
                case "--threads": threads = integer(args, ++i, a); break;
                case "--max-new-tokens": b.maxNewTokens(integer(args, ++i, a)); break;
                case "--min-new-tokens": b.minNewTokens(integer(args, ++i, a)); break;
                case "--temperature": temp = real(args, ++i, a); break;
                case "--top-k": topK = integer(args, ++i, a); break;
                case "--top-p": topP = real(args, ++i, a); break;
                case "--seed": seed = (long) integer(args, ++i, a); break;
                case "--stop": b.stop(value(args, ++i, a)); break;
                case "-h": case "--help": out.println(USAGE); return 0;
                default:
                    if (a.startsWith("--")) {
                        throw new ConfigException("unknown option " + a + "; " + USAGE);
                    }
                    positional.add(a);
            }
        }
        if (positional.isEmpty() || positional.size() > 2) {
            throw new ConfigException(USAGE);
        }
        raw.check(args, positional);
        bundle = positional.get(0);
        input = positional.size() > 1 ? positional.get(1) : null;
        if (task != null && plain) {
            throw new ConfigException("--task and --plain exclude each other");
        }
        if (sample) {
            b.sample(temp, topK, topP, seed);
        }
        GenerationConfig cfg = b.build();
        messages = ChatInput.merge(messages, messagesFile, input);
        try (Bundle rt = Bundle.load(Paths.get(bundle), threads, spin, providers, graph, sessionConfig)) {
            if (list) {
                listTasks(rt, out);
                return 0;
            }
            if (task == null && !plain && !chat) {
                List<Object> names = new ArrayList<>(rt.tasks().keySet());
                names.sort(null);
                throw new ConfigException("--task is required (available: " + Py.repr(names) + "), or --plain for the plain backbone");
            }
            String name = task == null ? null : rt.task(task).name;
            if (!messages.isEmpty()) {
                ChatInput.answer(rt, messages, name, cfg, out);
                return 0;
            }
            if (input != null) {
                answer(rt, input, name, cfg, chat, out);
                return 0;
            }
            return interact(rt, name, cfg, chat, out);
        }
    }

    /** {@code --session-config KEY=VALUE} into {@code into} (the key up to the first '='). */
    private static void keyValue(String v, java.util.Map<String, String> into) {
        int eq = v.indexOf('=');
        if (eq <= 0) {
            throw new ConfigException("argument --session-config: expected KEY=VALUE (an ONNX Runtime session config"
                    + " entry), got " + Py.repr(v));
        }
        into.put(v.substring(0, eq), v.substring(eq + 1));
    }

    static String value(String[] args, int i, String opt) {
        if (i >= args.length) {
            throw new ConfigException(opt + " needs a value");
        }
        return args[i];
    }

    private static final java.util.regex.Pattern INT = java.util.regex.Pattern.compile("\\s*[+-]?[0-9]+\\s*");
    private static final java.util.regex.Pattern FLOAT = java.util.regex.Pattern.compile(
            "\\s*[+-]?(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))\\s*");

    /**
     * An integer option as argparse's {@code type=int} reads it (one line, no stack trace, for "1.5" or "1e12"):
     * Python's message; integers beyond the JVM's int range are refused by name (Python refuses them later).
     */
    static int integer(String[] args, int i, String opt) {
        String v = value(args, i, opt);
        if (!INT.matcher(v).matches()) {
            throw new ConfigException("argument " + opt + ": invalid int value: " + Py.repr(v));
        }
        java.math.BigInteger n = new java.math.BigInteger(v.strip());
        if (n.bitLength() > 31) {
            throw new ConfigException("argument " + opt + ": " + v.strip() + " is out of range");
        }
        return n.intValue();
    }

    /** A float option as argparse's {@code type=float} reads it ("nan", "inf" included; no Java-only syntax). */
    static double real(String[] args, int i, String opt) {
        String v = value(args, i, opt);
        if (!FLOAT.matcher(v).matches()) {
            throw new ConfigException("argument " + opt + ": invalid float value: " + Py.repr(v));
        }
        String t = v.strip().toLowerCase(java.util.Locale.ROOT).replace("infinity", "inf");
        String sign = t.startsWith("-") ? "-" : "";
        String body = t.replaceFirst("^[+-]", "");
        if (body.equals("nan")) {
            return Double.NaN;
        }
        return body.equals("inf") ? Double.parseDouble(sign + "Infinity") : Double.parseDouble(t);
    }

    /** What {@code edgevlm run --list} prints (the describe lines of the manifest). */
    static void listTasks(Bundle rt, PrintStream out) {
        List<String> lines = rt.manifest.describe();
        out.println(rt.root + ": " + lines.get(0));
        out.println(lines.size() > 1 ? String.join("\n", lines.subList(1, lines.size())) : "(no tasks: run with --plain)");
    }

    private static void answer(Bundle rt, String text, String task, GenerationConfig cfg, boolean chat,
                               PrintStream out) {
        Decoder.Result r = rt.generate(text, task, cfg, piece -> {
            out.print(piece);
            out.flush();
        }, chat);
        out.println();
        if (r.note != null) {
            System.err.println("edgevlm-core: note: " + r.note);
        }
    }

    private static int interact(Bundle rt, String task, GenerationConfig cfg, boolean chat, PrintStream out) {
        int status = 0;
        try (InputStream in = new BufferedInputStream(System.in)) {
            int number = 0;
            for (byte[] raw; (raw = readLine(in)) != null; ) {
                number++;
                Utf8Check.Error bad = Utf8Check.first(raw, raw.length);
                if (bad != null) { // Python decodes each line strictly, then goes on with the next
                    System.err.println("edgevlm-core: error: stdin line " + number + ": not UTF-8 text (" + bad.reason
                            + " at byte " + bad.start + ")");
                    status = 2;
                    continue;
                }
                String line = new String(raw, StandardCharsets.UTF_8).replaceAll("[\\r\\n]+$", "");
                if (Py.strip(line).isEmpty()) {
                    continue;
                }
                try {
                    answer(rt, line, task, cfg, chat, out);
                } catch (EdgeVlmException e) {
                    System.err.println("edgevlm-core: error: stdin line " + number + ": " + e.getMessage());
                    status = 2;
                }
            }
        } catch (java.io.IOException e) {
            throw new ConfigException("cannot read stdin (" + e.getMessage() + ")");
        }
        return status;
    }

    /** One line of {@code in} with its newline (null at EOF), as bytes: decoded only after the check. */
    private static byte[] readLine(InputStream in) throws java.io.IOException {
        java.io.ByteArrayOutputStream line = new java.io.ByteArrayOutputStream();
        for (int c; (c = in.read()) >= 0; ) {
            line.write(c);
            if (c == '\n') {
                break;
            }
        }
        return line.size() == 0 ? null : line.toByteArray();
    }
}
