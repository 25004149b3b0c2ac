"""CaseOps: the April records' reversible case transform, and the byte counts it needs.

The records from 2026-04-18 on (`lossless_caps_caseops_v1`, 1.0611 among them) lowercase every
ASCII letter before tokenizing and say where the capitals were with four operator characters
from Unicode's private use area, which the SentencePiece model reserves as pieces of their own:

    TITLE   U+E001  before a word: its first letter is a capital
    ALLCAPS U+E002  before a word of two or more letters: every letter is a capital
    CAPNEXT U+E003  inside a word: the next letter is a capital
    ESC     U+E004  the next character is itself, taken literally (how an operator
                    character that occurs in the text survives the round trip)

A word is a maximal run of ASCII letters; other characters (digits, accented and other
non-ASCII letters included) pass through unchanged and end a word. A word of mixed case
("iPhone", "McDonald") gets TITLE when its first letter is a capital and CAPNEXT before every
later capital. The model then sees "the" in "The", "THE" and "the" alike.

Scores stay in bits per ORIGINAL byte: operators and the ESC in front of an escaped character
stand for no byte of the original text, every other character for its own UTF-8 bytes (the
case of an ASCII letter does not change its size). `token_byte_counts` applies that to each
SentencePiece token through the span of transformed text the token covers, which is how the
records' byte sidecars (`fineweb_val_bytes_*.bin`) count.
"""

from __future__ import annotations

import re

import numpy as np

TRANSFORM = "lossless_caps_caseops_v1"
TRANSFORMS = (TRANSFORM,)
TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)  # reserved in the tokenizer, in this order

# Words with a capital somewhere (all-lowercase words are left as they are) and operator characters.
_WORD_OR_OPERATOR = re.compile("[a-z]*[A-Z][A-Za-z]*|[" + "".join(OPERATORS) + "]")


class CaseOpsError(ValueError):
    """Text that no original text encodes to (a dangling or misplaced operator)."""


def _mark_word(word: str) -> str:
    lower = word.lower()
    if word == lower:
        return word
    if len(word) > 1 and word.isupper():
        return ALLCAPS + lower
    head = TITLE + lower[0] if word[0].isupper() else lower[0]
    return head + "".join(CAPNEXT + c.lower() if c.isupper() else c for c in word[1:])


def _mark(match: re.Match) -> str:
    found = match.group()
    return ESC + found if found in OPERATORS else _mark_word(found)


def encode(text: str) -> str:
    """The text with its ASCII capitals replaced by operators (literal operator characters escaped)."""
    return _WORD_OR_OPERATOR.sub(_mark, text)


# What `decode` reads: an escaped character; a word (letters, CAPNEXT before any of them) with
# perhaps TITLE or ALLCAPS in front, where a word starts; any other operator is out of place.
_ENCODED_UNIT = re.compile(
    f"{ESC}(?P<literal>.)|(?:(?<![A-Za-z])(?P<mode>[{TITLE}{ALLCAPS}]))?(?P<word>(?:{CAPNEXT}?[A-Za-z])+)"
    f"|(?P<stray>[{''.join(OPERATORS)}])",
    re.DOTALL,
)
_CAPNEXT_LETTER = re.compile(f"{CAPNEXT}([A-Za-z])")


def _unmark(match: re.Match) -> str:
    if match.group("stray"):
        where = match.start()
        raise CaseOpsError(f"operator U+{ord(match.group()):04X} at character {where} is out of place")
    if match.group("literal") is not None:
        return match.group("literal")
    word, mode = match.group("word"), match.group("mode")
    if mode == ALLCAPS:
        return word.replace(CAPNEXT, "").upper()
    word = _CAPNEXT_LETTER.sub(lambda m: m.group(1).upper(), word)
    return word[0].upper() + word[1:] if mode == TITLE else word


def decode(text: str) -> str:
    """Invert `encode`; raise CaseOpsError for text `encode` cannot have produced."""
    return _ENCODED_UNIT.sub(_unmark, text)


def original_byte_weights(transformed: bytes) -> np.ndarray:
    """For each byte of UTF-8 transformed text: 1 if it is a byte of the original text, else 0.

    Operator characters weigh 0, except a character right after ESC (a literal), whose bytes count.
    """
    weights = np.ones(len(transformed), dtype=np.int64)
    text = transformed.decode("utf-8")
    if not any(op in text for op in OPERATORS):
        return weights
    position, escaped = 0, False
    for ch in text:
        size = len(ch.encode("utf-8"))
        if escaped:
            escaped = False
        elif ch in OPERATORS:
            weights[position : position + size] = 0
            escaped = ch == ESC
        position += size
    return weights


# ------------------------------------------------------------ token spans from SentencePiece
#
# SentencePiece reports, for each piece, the byte span [begin, end) of the input it came from
# (in its SentencePieceText message, which `encode(out_type="serialized_proto")` returns in
# every version; the decoded form needs the protobuf package or an old release). Field numbers:
# SentencePieceText.pieces = 2; SentencePiece.id = 2, .begin = 4, .end = 5.


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _skip(buf: bytes, pos: int, wire: int) -> int:
    """The position after a field's value of this wire type."""
    if wire == 0:
        return _varint(buf, pos)[1]
    if wire == 2:
        size, pos = _varint(buf, pos)
        return pos + size
    if wire in (1, 5):
        return pos + (8 if wire == 1 else 4)
    raise ValueError(f"unexpected protobuf wire type {wire}")


def piece_spans(serialized: bytes) -> list[tuple[int, int, int]]:
    """(id, begin, end) of every piece of a serialized SentencePieceText.

    A hand-written reader (millions of pieces per validation split): one-byte varints, the
    common case, are read inline; anything else goes through _varint/_skip."""
    buf, spans, pos, n = serialized, [], 0, len(serialized)
    while pos < n:
        key, pos = (buf[pos], pos + 1) if buf[pos] < 0x80 else _varint(buf, pos)
        if key != 0x12:  # not a piece (field 2, length-delimited)
            pos = _skip(buf, pos, key & 7)
            continue
        size, pos = (buf[pos], pos + 1) if buf[pos] < 0x80 else _varint(buf, pos)
        stop, fields = pos + size, [0, 0, 0, 0, 0, 0]
        while pos < stop:
            key, pos = (buf[pos], pos + 1) if buf[pos] < 0x80 else _varint(buf, pos)
            if key & 7 == 2 and buf[pos] < 0x80:  # piece and surface: short strings
                pos += 1 + buf[pos]
            elif key & 7 == 0:
                if buf[pos] < 0x80:
                    value, pos = buf[pos], pos + 1
                elif buf[pos + 1] < 0x80:
                    value, pos = (buf[pos] & 0x7F) | (buf[pos + 1] << 7), pos + 2
                else:
                    value, pos = _varint(buf, pos)
                if key < 0x30:  # fields 1-5
                    fields[key >> 3] = value
            else:
                pos = _skip(buf, pos, key & 7)
        spans.append((fields[2], fields[4], fields[5]))
    return spans


def token_byte_counts(sp, transformed_texts: list[str]) -> list[tuple[list[int], list[int]]]:
    """For each transformed text: its token ids and, per token, the original UTF-8 bytes it covers."""
    results = []
    for text, serialized in zip(transformed_texts, sp.encode(transformed_texts, out_type="serialized_proto", num_threads=1)):
        spans = np.asarray(piece_spans(serialized), dtype=np.int64).reshape(-1, 3)
        cumulative = np.concatenate(([0], np.cumsum(original_byte_weights(text.encode("utf-8")))))
        counts = cumulative[spans[:, 2]] - cumulative[spans[:, 1]]
        results.append((spans[:, 0].tolist(), counts.tolist()))
    return results
