"""Incremental detokenization and stop strings: O(1) work per token, never re-decoding the whole text.

GPT-2's byte-level BPE maps every token to a fixed byte string; a character
may span several tokens. :class:`TextStream` looks bytes up in a table built
once per tokenizer and feeds them to an incremental UTF-8 decoder, which
emits only complete characters. Joined, the pieces equal
``tokenizer.decode(ids)`` (special tokens skipped).
"""

from __future__ import annotations

import codecs

from tokenizers import decoders


def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted: char -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def token_bytes(tokenizer, size: int) -> list[bytes]:
    """Byte string of every id below ``size`` (special tokens and unknown ids: empty), as ``decode`` joins them."""
    table = [b""] * size
    added = tokenizer.get_added_tokens_decoder()
    if isinstance(tokenizer.decoder, decoders.ByteLevel):
        inv = byte_decoder()
        for tok, i in tokenizer.get_vocab(with_added_tokens=False).items():
            if i < size and i not in added:
                table[i] = bytes(inv[c] for c in tok) if all(c in inv for c in tok) else tok.encode()
    else:  # not byte-level: per-token decoding is the best a fixed table can do
        for i in range(min(size, tokenizer.get_vocab_size())):
            table[i] = tokenizer.decode([i]).encode()
    for i, tok in added.items():
        if i < size:
            table[i] = b"" if tok.special else tok.content.encode()
    return table


class TextStream:
    """Token ids in, complete UTF-8 text out; an unfinished character waits for its next byte."""

    def __init__(self, table: list[bytes]):
        self.table = table
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self.utf8.decode(self.table[token])

    def flush(self) -> str:
        """Whatever is left (an incomplete character becomes U+FFFD, as in ``decode``)."""
        return self.utf8.decode(b"", final=True)


class StopMatcher:
    """Holds back just enough text to recognise a stop string split across pieces.

    ``push`` returns the text that is safe to emit and whether a stop string
    was found (the output then ends right before it).
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        cut = max(len(self.pending) - self.hold, 0)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class OutputText:
    """One output as it decodes: its token ids and its text (bytes -> UTF-8 -> stop strings -> leading space trimmed).

    Targets are trained as ``" " + text``, so the first emitted whitespace is
    dropped. ``done`` becomes true at a stop string or after :meth:`finish`.
    """

    def __init__(self, table: list[bytes], stops: list[str]):
        self.tokens: list[int] = []
        self.done = False
        self._text = TextStream(table)
        self._stop = StopMatcher(stops)
        self._started = False

    def push(self, token: int) -> str:
        self.tokens.append(token)
        text, hit = self._stop.push(self._text.push(token))
        self.done = hit
        return self._trim(text)

    def finish(self) -> str:
        """The text still held back, once decoding has ended (EOS or length); empty if already done."""
        if self.done:
            return ""
        self.done = True
        text, hit = self._stop.push(self._text.flush())
        return self._trim(text if hit else text + self._stop.flush())

    def _trim(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text
