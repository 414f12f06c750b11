package io.edgevlm.core;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * GPT-2 style byte-level BPE read from a Hugging Face {@code tokenizer.json}: added tokens split out first,
 * the ByteLevel pre-tokenizer's regex, bytes mapped to printable characters, then merges by rank (lowest
 * first, leftmost on ties), as the {@code tokenizers} package does; optionally after a Digits pre-tokenizer
 * (SmolLM2's {@code Sequence[Digits, ByteLevel]}). Anything else in the file (normalizers, other models or
 * pre-tokenizers) is refused rather than approximated. Immutable and thread-safe.
 */
public final class ByteLevelBpe {
    /** Unicode White_Space, spelled out: what {@code \\s} means to the Rust regex engine of tokenizers. (Not the
     *  UNICODE_CHARACTER_CLASS flag, which Android's regex engine does not support.) */
    static final String WS = "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
    /** The GPT-2 pre-tokenizer pattern. */
    private static final Pattern GPT2_SPLIT = Pattern.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + WS + "\\p{L}\\p{N}]+|[" + WS + "]+(?![^" + WS + "])|[" + WS + "]+");
    private static final int CACHE_LIMIT = 50_000;

    private final Map<String, Integer> vocab;
    private final Map<Long, long[]> merges; // (left id << 32 | right id) -> {rank, merged id}
    private final List<String> added; // added token contents, matched leftmost-longest in raw text
    private final Map<String, Integer> addedIds;
    private final char[] byteChar = new char[256];
    private final boolean addPrefixSpace;
    /** Digits pre-tokenizer before ByteLevel: null none, true each digit alone, false digit runs. */
    private final Boolean digitSplit;
    private final boolean useRegex;
    private final int size;
    private final byte[][] tokenBytes;
    private final Map<String, int[]> cache = new ConcurrentHashMap<>();

    private ByteLevelBpe(Map<String, Object> json) {
        Map<String, Object> model = obj(json.get("model"), "model");
        if (!"BPE".equals(model.get("type"))) {
            throw new IllegalArgumentException("model.type " + Py.repr(model.get("type")) + " is not BPE");
        }
        if (json.get("normalizer") != null) {
            throw new IllegalArgumentException("normalizers are not supported (byte-level BPE only)");
        }
        Map<String, Object> pre = obj(json.get("pre_tokenizer"), "pre_tokenizer");
        Boolean digits = null;
        if ("Sequence".equals(pre.get("type"))) { // SmolLM2: Sequence[Digits(individual_digits), ByteLevel]
            List<?> steps = pre.get("pretokenizers") instanceof List ? (List<?>) pre.get("pretokenizers") : List.of();
            Map<String, Object> first = steps.size() == 2 ? obj(steps.get(0), "pre_tokenizer.pretokenizers[0]") : Map.of();
            if (!"Digits".equals(first.get("type"))) {
                throw new IllegalArgumentException("pre_tokenizer Sequence is supported only as [Digits, ByteLevel]");
            }
            digits = Boolean.TRUE.equals(first.get("individual_digits"));
            pre = obj(steps.get(1), "pre_tokenizer.pretokenizers[1]");
        }
        if (!"ByteLevel".equals(pre.get("type"))) {
            throw new IllegalArgumentException("pre_tokenizer " + Py.repr(pre.get("type")) + " is not ByteLevel");
        }
        digitSplit = digits;
        for (String k : new String[] {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
            if (model.get(k) != null) {
                throw new IllegalArgumentException("model." + k + " is not supported");
            }
        }
        addPrefixSpace = Boolean.TRUE.equals(pre.get("add_prefix_space"));
        useRegex = !Boolean.FALSE.equals(pre.get("use_regex"));
        int extra = 0;
        for (int x = 0; x < 256; x++) {
            boolean printable = (x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff);
            byteChar[x] = printable ? (char) x : (char) (256 + extra++);
        }
        vocab = new HashMap<>();
        int max = -1;
        for (Map.Entry<String, Object> e : obj(model.get("vocab"), "model.vocab").entrySet()) {
            int id = ((Number) e.getValue()).intValue();
            vocab.put(e.getKey(), id);
            max = Math.max(max, id);
        }
        merges = new HashMap<>();
        List<?> ms = (List<?>) model.get("merges");
        for (int rank = 0; ms != null && rank < ms.size(); rank++) {
            Object m = ms.get(rank);
            String l;
            String r;
            if (m instanceof String) { // "a b" (older files) or ["a", "b"] (tokenizers >= 0.20)
                String[] parts = ((String) m).split(" ", 2);
                l = parts[0];
                r = parts.length > 1 ? parts[1] : "";
            } else {
                l = (String) ((List<?>) m).get(0);
                r = (String) ((List<?>) m).get(1);
            }
            Integer li = vocab.get(l);
            Integer ri = vocab.get(r);
            Integer merged = vocab.get(l + r);
            if (li == null || ri == null || merged == null) {
                throw new IllegalArgumentException("merge " + Py.repr(l + " " + r) + " uses tokens not in the vocabulary");
            }
            merges.putIfAbsent(((long) li << 32) | ri, new long[] {rank, merged});
        }
        added = new ArrayList<>();
        addedIds = new HashMap<>();
        Map<Integer, Boolean> special = new HashMap<>();
        List<?> at = json.get("added_tokens") instanceof List ? (List<?>) json.get("added_tokens") : List.of();
        for (Object o : at) {
            Map<String, Object> t = obj(o, "added_tokens[]");
            for (String k : new String[] {"single_word", "lstrip", "rstrip"}) {
                if (Boolean.TRUE.equals(t.get(k))) {
                    throw new IllegalArgumentException("added token option " + k + " is not supported");
                }
            }
            String content = (String) t.get("content");
            int id = ((Number) t.get("id")).intValue();
            added.add(content);
            addedIds.put(content, id);
            special.put(id, Boolean.TRUE.equals(t.get("special")));
            max = Math.max(max, id);
        }
        added.sort((x, y) -> y.length() - x.length()); // longest first at a given position
        size = max + 1;
        tokenBytes = byteTable(special);
    }

    /** Parses a tokenizer.json document; IllegalArgumentException (one line) for unsupported tokenizers. */
    @SuppressWarnings("unchecked")
    public static ByteLevelBpe fromJson(String text) {
        Object j = Json.parse(text);
        if (!(j instanceof Map)) {
            throw new IllegalArgumentException("expected a JSON object");
        }
        return new ByteLevelBpe((Map<String, Object>) j);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> obj(Object o, String what) {
        if (!(o instanceof Map)) {
            throw new IllegalArgumentException(what + " must be an object");
        }
        return (Map<String, Object>) o;
    }

    /** Like Python's {@code token_bytes}: each id's bytes as decode joins them (special tokens: empty). */
    private byte[][] byteTable(Map<Integer, Boolean> special) {
        Map<Character, Integer> inv = new HashMap<>();
        for (int x = 0; x < 256; x++) {
            inv.put(byteChar[x], x);
        }
        byte[][] t = new byte[size][];
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            String tok = e.getKey();
            byte[] out = new byte[tok.length()];
            boolean ok = true;
            for (int k = 0; k < tok.length() && ok; k++) {
                Integer x = inv.get(tok.charAt(k));
                ok = x != null;
                out[k] = ok ? (byte) (int) x : 0;
            }
            t[e.getValue()] = ok ? out : tok.getBytes(StandardCharsets.UTF_8);
        }
        for (Map.Entry<String, Integer> e : addedIds.entrySet()) {
            t[e.getValue()] = special.get(e.getValue()) ? new byte[0] : e.getKey().getBytes(StandardCharsets.UTF_8);
        }
        for (int k = 0; k < size; k++) {
            t[k] = t[k] == null ? new byte[0] : t[k];
        }
        return t;
    }

    /** Token ids of {@code text} without special-token post-processing ({@code add_special_tokens=False}). */
    public List<Integer> encode(String text) {
        List<Integer> ids = new ArrayList<>();
        int start = 0;
        int k = 0;
        while (k < text.length()) {
            String hit = null;
            for (String a : added) {
                if (text.startsWith(a, k)) {
                    hit = a;
                    break;
                }
            }
            if (hit == null) {
                k++;
                continue;
            }
            encodeOrdinary(text.substring(start, k), ids);
            ids.add(addedIds.get(hit));
            k += hit.length();
            start = k;
        }
        encodeOrdinary(text.substring(start), ids);
        return ids;
    }

    private void encodeOrdinary(String text, List<Integer> ids) {
        if (digitSplit == null) {
            byteLevel(text, ids);
            return;
        }
        int start = 0; // tokenizers' Digits: numeric chars isolated (one each, or contiguous runs)
        for (int k = 0; k < text.length(); ) {
            int c = text.codePointAt(k);
            int next = k + Character.charCount(c);
            if (numeric(c)) {
                int end = next;
                while (!digitSplit && end < text.length() && numeric(text.codePointAt(end))) {
                    end += Character.charCount(text.codePointAt(end));
                }
                byteLevel(text.substring(start, k), ids);
                byteLevel(text.substring(k, end), ids);
                start = end;
                next = end;
            }
            k = next;
        }
        byteLevel(text.substring(start), ids);
    }

    /** Rust's {@code char::is_numeric}: general categories Nd, Nl, No. */
    private static boolean numeric(int c) {
        int t = Character.getType(c);
        return t == Character.DECIMAL_DIGIT_NUMBER || t == Character.LETTER_NUMBER || t == Character.OTHER_NUMBER;
    }

    /** The ByteLevel pre-tokenizer on one split (prefix space per split, as tokenizers does), then BPE. */
    private void byteLevel(String text, List<Integer> ids) {
        if (text.isEmpty()) {
            return;
        }
        if (addPrefixSpace && !text.startsWith(" ")) {
            text = " " + text;
        }
        if (!useRegex) {
            word(text, ids);
            return;
        }
        Matcher m = GPT2_SPLIT.matcher(text);
        int last = 0;
        while (m.find()) {
            if (m.start() > last) {
                word(text.substring(last, m.start()), ids);
            }
            word(m.group(), ids);
            last = m.end();
        }
        if (last < text.length()) {
            word(text.substring(last), ids);
        }
    }

    private void word(String piece, List<Integer> ids) {
        int[] cached = cache.get(piece);
        if (cached == null) {
            cached = bpe(piece);
            if (cache.size() < CACHE_LIMIT) {
                cache.put(piece, cached);
            }
        }
        for (int id : cached) {
            ids.add(id);
        }
    }

    /** BPE of one pre-token: its UTF-8 bytes as characters, then the lowest-ranked adjacent pair merged. */
    private int[] bpe(String piece) {
        byte[] bytes = piece.getBytes(StandardCharsets.UTF_8);
        List<Integer> sym = new ArrayList<>(bytes.length);
        for (byte x : bytes) {
            Integer id = vocab.get(String.valueOf(byteChar[x & 0xff]));
            if (id != null) { // no unk token: tokenizers drops unknown symbols
                sym.add(id);
            }
        }
        while (sym.size() > 1) {
            long bestRank = Long.MAX_VALUE;
            int bestPos = -1;
            long merged = 0;
            for (int p = 0; p + 1 < sym.size(); p++) {
                long[] m = merges.get(((long) sym.get(p) << 32) | sym.get(p + 1));
                if (m != null && m[0] < bestRank) {
                    bestRank = m[0];
                    bestPos = p;
                    merged = m[1];
                }
            }
            if (bestPos < 0) {
                break;
            }
            sym.set(bestPos, (int) merged);
            sym.remove(bestPos + 1);
        }
        return sym.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Bytes of token {@code id} (empty for special and unknown ids), for incremental decoding. */
    public byte[] tokenBytes(int id) {
        return id >= 0 && id < size ? tokenBytes[id] : new byte[0];
    }

    /** Joined text of {@code ids} (special tokens skipped; a broken character becomes U+FFFD). */
    public String decode(List<Integer> ids) {
        Utf8Stream s = new Utf8Stream();
        StringBuilder b = new StringBuilder();
        for (int id : ids) {
            b.append(s.push(tokenBytes(id)));
        }
        return b.append(s.flush()).toString();
    }

    /** Distinct token strings of the vocabulary and the added tokens (HF's get_vocab_size(with_added_tokens)). */
    public int sizeWithAdded() {
        java.util.Set<String> all = new java.util.HashSet<>(vocab.keySet());
        all.addAll(addedIds.keySet());
        return all.size();
    }

    /** Id of an exact token string (vocabulary or added token), or null. */
    public Integer tokenToId(String token) {
        Integer id = addedIds.get(token);
        return id != null ? id : vocab.get(token);
    }

    /** One past the largest id (vocabulary and added tokens). */
    public int size() {
        return size;
    }
}
