"""Docs-to-shards throughput of the docs route: worker processes against a single-process baseline.

    python bench/tokenize_throughput.py [--mb 50] [--workers 0] [--repeats 3] [--work DIR]

Builds a synthetic but realistic corpus (--mb MB of UTF-8 text, deterministic): documents
of FineWeb-like lengths (log-normal, median ~2.5 KB) assembled from the real English prose
of the embedded corpus (King James Bible, Shakespeare), with web-page furniture mixed in:
headings, dates, prices, URLs, lists, accented words, curly quotes and the odd emoji.
A tokenizer with the challenge's settings (vocab 1024) is trained once on a slice of it.

Then, each in a fresh process, the docs route (`build_docs_dataset`, existing-model route)
runs with workers=1 (the baseline: batched encoding and the same shard writer in the one
process) and with workers=N (all cores by default). Reported: MB of document text per second
over the whole build (reading, JSON parsing, encoding, shard writing and hashing, manifest),
the speedup, and peak memory: the main process's peak RSS (its VmHWM), the largest worker's
(VmHWM, sampled), and the peak of the whole process tree's summed RSS (sampled every 50 ms).
Both runs must write
byte-identical shards. A run on a quarter of the corpus shows that memory does not grow
with corpus size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARD_TOKENS = 1_000_000


# ---------------------------------------------------------------- the corpus


def _paragraphs() -> list[str]:
    """Real English prose from the embedded corpus, cut into paragraphs."""
    paragraphs = []
    with lzma.open(REPO / "data/corpus/embedded.jsonl.xz", "rt", encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["text"]
            paragraphs += [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]
    return paragraphs


def _furniture(rng: random.Random) -> str:
    """Web-page text around the prose: what FineWeb documents carry besides sentences."""
    kind = rng.randrange(7)
    if kind == 0:
        return f"Posted on {rng.randint(1, 28)} {rng.choice(['March', 'June', 'Sept.', 'Dezember'])} {rng.randint(1998, 2024)} by {rng.choice(['admin', 'Jürgen K.', 'María', 'J. Smith'])}"
    if kind == 1:
        return f"Price: ${rng.randint(1, 999)}.{rng.randint(0, 99):02d} — save {rng.randint(5, 70)}% today!"
    if kind == 2:
        return f"See https://www.example{rng.randint(1, 99)}.com/{rng.choice(['blog', 'news', 'wiki'])}/{rng.randint(1000, 99999)}?ref=home"
    if kind == 3:
        return "\n".join(f"• {rng.choice(['Step', 'Item', 'Note'])} {i + 1}: {rng.choice(['café', 'naïve', 'résumé', 'coöperate', 'fiancée'])} ({rng.randint(1, 500)} mg)" for i in range(rng.randint(2, 5)))
    if kind == 4:
        return f"“{rng.choice(['Great read', 'Thanks for sharing', 'I disagree'])}” {rng.choice(['👍', '😀', '🙂', ''])} – {rng.randint(1, 300)} comments"
    if kind == 5:
        return f"## {rng.choice(['Introduction', 'Chapter', 'FAQ', 'Summary'])} {rng.randint(1, 12)}"
    return f"Tel. +{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)} · ISBN 978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}"


def make_corpus(path: Path, megabytes: float, seed: int = 1234) -> tuple[int, int]:
    """Write the corpus; return (documents, bytes of UTF-8 text)."""
    rng = random.Random(seed)
    paragraphs = _paragraphs()
    target, text_bytes, docs = int(megabytes * 1e6), 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while text_bytes < target:
            length = min(int(math.exp(rng.gauss(math.log(2500), 0.9))), 100_000)
            parts, size = [], 0
            start = rng.randrange(len(paragraphs))
            while size < length:
                piece = _furniture(rng) if rng.random() < 0.25 else paragraphs[(start + len(parts)) % len(paragraphs)]
                parts.append(piece)
                size += len(piece.encode()) + 2
            text = "\n\n".join(parts)
            out.write(json.dumps({"text": text, "id": f"<urn:uuid:{docs:08x}>"}, ensure_ascii=False) + "\n")
            text_bytes += len(text.encode())
            docs += 1
    return docs, text_bytes


# ---------------------------------------------------------------- one measured run (child process)


def child(args: argparse.Namespace) -> None:
    from pgolf.docs import build_docs_dataset

    started = time.perf_counter()
    manifest = build_docs_dataset(
        args.docs, args.out, num_val_docs=args.num_val_docs, shard_tokens=SHARD_TOKENS,
        tokenizer={"model": args.model, "vocab_size": 1024}, workers=args.workers, log=lambda _: None,
    )
    seconds = time.perf_counter() - started
    shards = hashlib.sha256("".join(e["sha256"] for e in manifest["files"]).encode()).hexdigest()
    print(json.dumps({
        "seconds": seconds,
        "main_peak_mb": _status_kb(os.getpid(), "VmHWM") / 1024,
        "tokens": manifest["stats"]["tokens_val"] + manifest["stats"]["tokens_train"],
        "shards": sum(e["split"] != "tokenizer" for e in manifest["files"]),
        "files_digest": shards,
    }))


def _status_kb(pid: int, key: str) -> int:
    """A memory figure from /proc/<pid>/status, in kB (VmHWM: peak RSS since exec; VmRSS: now)."""
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))


def measure(docs: Path, model: Path, out: Path, workers: int, num_val_docs: int, memory: bool = False) -> dict:
    """Run one build in a fresh process; with `memory`, sample the whole process tree's RSS meanwhile.

    Timed runs are not sampled (on 2 cores the sampler's own CPU would show in the times).
    (ru_maxrss would not do for the peaks: Linux carries the parent's peak across fork+exec.)
    """
    import psutil

    cmd = [sys.executable, __file__, "--child", "--docs", str(docs), "--model", str(model), "--out", str(out),
           "--workers", str(workers), "--num-val-docs", str(num_val_docs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    peak, workers_hwm, done = [0], {}, threading.Event()

    def sample() -> None:
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                total = 0
                for p in tree:
                    total += _status_kb(p.pid, "VmRSS")
                    if p.pid != proc.pid:
                        workers_hwm[p.pid] = _status_kb(p.pid, "VmHWM")
                peak[0] = max(peak[0], total)
            except (psutil.Error, OSError, StopIteration):
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample if memory else done.wait, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"benchmark child failed with exit code {proc.returncode}")
    worker_peak = max(workers_hwm.values(), default=0) / 1024
    return {**json.loads(stdout.strip().splitlines()[-1]), "tree_peak_mb": peak[0] / 1024, "worker_peak_mb": worker_peak}


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="MB of document text in the corpus")
    ap.add_argument("--workers", type=int, default=0, help="worker processes of the parallel run (0 = all cores)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per mode; the fastest counts")
    ap.add_argument("--work", help="scratch directory (default: a temporary one)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--docs", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--num-val-docs", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    from pgolf.docs import default_workers, iter_docs
    from pgolf.tokenizer import train_tokenizer

    workers = args.workers or default_workers()
    work = Path(args.work or tempfile.mkdtemp(prefix="pgolf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    docs = work / "docs.jsonl"
    ndocs, text_bytes = make_corpus(docs, args.mb)
    quarter = work / "docs_quarter.jsonl"
    make_corpus(quarter, args.mb / 4)
    sample = [text for _, text in zip(range(3000), iter_docs(docs))]
    model = train_tokenizer(sample, 1024, work / "tokenizer")
    print(f"corpus: {ndocs} docs, {text_bytes / 1e6:.1f} MB of text ({docs.stat().st_size / 1e6:.1f} MB JSONL), "
          f"{os.cpu_count()} CPUs, shard_tokens {SHARD_TOKENS:,}")

    num_val = max(4, ndocs // 20)  # 5% validation, as a stand-in for the challenge's 50,000 of ~2M docs
    results = {}
    for label, count in (("baseline (1 process)", 1), (f"parallel ({workers} workers)", workers)):
        runs = [measure(docs, model, work / f"out_{count}_{r}", count, num_val) for r in range(args.repeats)]
        best = results[label] = min(runs, key=lambda r: r["seconds"])
        mem = measure(docs, model, work / f"out_{count}_mem", count, num_val, memory=True)
        best |= {k: mem[k] for k in ("worker_peak_mb", "tree_peak_mb")}
        times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(f"{label:22} {text_bytes / 1e6 / best['seconds']:6.2f} MB/s  ({best['seconds']:.2f} s best of "
              f"{args.repeats}: {times})  peak RSS: main {best['main_peak_mb']:.0f} MB, "
              f"largest worker {best['worker_peak_mb']:.0f} MB, whole tree {best['tree_peak_mb']:.0f} MB")
    base, par = results.values()
    assert base["files_digest"] == par["files_digest"], "parallel shards differ from the baseline's"
    print(f"speedup: {base['seconds'] / par['seconds']:.2f}x; {par['tokens']:,} tokens in {par['shards']} shards, "
          "byte-identical in both modes")
    small = measure(quarter, model, work / "out_quarter", workers, num_val // 4, memory=True)
    print(f"memory vs corpus size ({workers} workers): {args.mb / 4:g} MB corpus -> tree peak {small['tree_peak_mb']:.0f} MB, "
          f"{args.mb:g} MB corpus -> tree peak {par['tree_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
