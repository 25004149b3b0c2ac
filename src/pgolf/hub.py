"""data.source = hub: the challenge's pre-tokenized FineWeb export from the Hugging Face hub.

The export's manifest.json lists, per dataset variant, how many train and val
shards exist and which tokenizer files belong to it. We fetch the val shards,
the first N train shards and the tokenizer with `huggingface_hub` at one
commit (the configured revision is resolved once, so a branch that moves
mid-download cannot mix two versions), then write our own manifest
(pgolf-data/1) with the size and sha256 of every file.

What huggingface_hub provides, and we rely on: downloads into its cache
under a temporary name that is renamed only when complete, resuming a
dropped connection with an HTTP Range request, `HF_ENDPOINT`, `HF_HOME` /
`HF_HUB_CACHE` and `HF_TOKEN` (sent to the hub, never to a CDN, never logged).

What we add: every file is checked against the size and checksum the hub
advertises (its ETag is the sha256 of LFS files and the git blob id of small
ones), which the cached download alone does not do; a file that fails the
check, or a transient network or server error, is retried a bounded number
of times before the run stops with one line naming the file; the checked file
is hard-linked (or copied) into the data directory under a temporary name and
renamed, so no partial file ever carries a final name. Files already in place
and matching are kept, so an interrupted run resumes where it stopped, and a
rerun over a complete directory touches the network not at all.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pgolf.data import (
    MANIFEST_NAME,
    SHARD_NAME_GLOB,
    DataError,
    load_manifest,
    split_totals,
    verify_dataset,
    write_manifest,
)
from pgolf.progress import interactive
from pgolf.shards import atomic_writer, read_header
from pgolf.tokenizer import load_checked_model

ATTEMPTS = 4  # per file: the first try and three retries
BACKOFF_SECONDS = 2.0  # doubled after each failed attempt
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
UPSTREAM_MANIFEST = "upstream_manifest.json"
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")


class _Mismatch(Exception):
    """A downloaded file differs from what the hub advertises (size or checksum)."""


@dataclass(frozen=True)
class Wanted:
    """One file to fetch: where it is in the repo, its name here, and its role in the manifest."""

    remote: str
    local: str
    split: str


# ---------------------------------------------------------------- checks


def _digests(path: Path, git_blob: bool) -> tuple[str, str | None]:
    """sha256 of the file and, when asked, its git blob id (sha1 of "blob <size>\\0" + content), in one read."""
    sha256 = hashlib.sha256()
    sha1 = None
    if git_blob:
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha1.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha256.update(block)
            if sha1 is not None:
                sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest() if sha1 is not None else None


def check_against_hub(path: Path, size: int | None, etag: str | None) -> str:
    """Return the file's sha256 if it matches the hub's size and checksum; raise _Mismatch otherwise.

    An ETag that is neither a sha256 nor a git blob id cannot be checked;
    the size still is.
    """
    if not path.is_file():
        raise _Mismatch(f"{path.name}: missing")
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise _Mismatch(f"{path.name}: {actual} bytes, the hub says {size}")
    etag = (etag or "").lower()
    sha256, git_blob = _digests(path, git_blob=bool(COMMIT_RE.fullmatch(etag)))
    if SHA256_RE.fullmatch(etag) and sha256 != etag:
        raise _Mismatch(f"{path.name}: sha256 {sha256}, the hub says {etag}")
    if git_blob is not None and git_blob != etag:
        raise _Mismatch(f"{path.name}: git blob id {git_blob}, the hub says {etag}")
    return sha256


def _place(source: Path, dest: Path) -> None:
    """Put `source` at `dest` atomically: a hard link when possible (no second copy of 16 GB), else a copy."""
    source = source.resolve()
    if dest.exists() and os.path.samefile(source, dest):
        return
    temporary = dest.with_name(f".{dest.name}.{os.getpid()}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
        os.replace(temporary, dest)
    except OSError:
        temporary.unlink(missing_ok=True)
        with atomic_writer(dest) as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)


# ---------------------------------------------------------------- errors


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's transport errors (huggingface_hub has used requests, httpx and httpx2)."""
    found = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _is_transient(error: BaseException) -> bool:
    """Worth another attempt: network trouble, server overload, a short or corrupt transfer.

    Anything that says the repo, revision or file does not exist, or that
    access is refused, is final: retrying cannot fix it.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        FileMetadataError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, ValueError) and isinstance(error.__cause__, Exception):
        return _is_transient(error.__cause__)  # "Force download failed due to the above error."
    if isinstance(error, LocalEntryNotFoundError):
        cause = error.__cause__
        return not isinstance(cause, FileMetadataError) if cause is not None else True
    if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, FileMetadataError)):
        return False
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        return status is None or status in RETRY_STATUS
    return isinstance(error, (_Mismatch, OSError, *_network_errors()))


def _final_error(repo: str, error: BaseException) -> DataError | None:
    """One line for a hub error retrying cannot fix, naming the setting that most likely needs a change.

    None when the error does not come from the hub at all.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, ValueError) and isinstance(error.__cause__, Exception):
        return _final_error(repo, error.__cause__)
    if isinstance(error, GatedRepoError):
        return DataError(f"data.hub.repo_id: {repo} is gated: accept its terms on the hub and set HF_TOKEN")
    if isinstance(error, RepositoryNotFoundError):
        return DataError(
            f"data.hub.repo_id: {repo}: dataset repository not found or not accessible (set HF_TOKEN if it is private)"
        )
    if isinstance(error, RevisionNotFoundError):
        return DataError(f"data.hub.revision: {repo}: revision not found")
    if isinstance(error, EntryNotFoundError):
        return DataError(f"{repo}: no such file in the repository")
    if isinstance(error, HfHubHTTPError) and error.response is not None and error.response.status_code in (401, 403):
        return DataError(f"{repo}: access refused (HTTP {error.response.status_code}); check HF_TOKEN")
    if isinstance(error, (HfHubHTTPError, FileMetadataError)):
        return DataError(f"{repo}: {_one_line(error)}")
    return None


# ---------------------------------------------------------------- the hub


class Hub:
    """One dataset repo at one commit, with bounded retries around every request."""

    def __init__(
        self,
        repo_id: str,
        revision: str,
        *,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF_SECONDS,
        endpoint: str | None = None,
        cache_dir: str | None = None,
        log: Callable[[str], None] = print,
    ):
        self.repo_id, self.revision, self.commit = repo_id, revision, revision
        self.attempts, self.backoff = max(attempts, 1), backoff
        self.endpoint, self.cache_dir, self.log = endpoint, cache_dir, log

    def _metadata(self, remote: str):
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.repo_id, remote, repo_type="dataset", revision=self.commit, endpoint=self.endpoint)
        return get_hf_file_metadata(url, endpoint=self.endpoint)

    def _download(self, remote: str, force: bool) -> Path:
        from huggingface_hub import hf_hub_download

        return Path(
            hf_hub_download(
                self.repo_id,
                remote,
                repo_type="dataset",
                revision=self.commit,
                force_download=force,
                endpoint=self.endpoint,
                cache_dir=self.cache_dir,
            )
        )

    def resolve(self, remote: str) -> str:
        """Pin every later request to the commit the configured revision points at now."""
        meta = self._retrying(remote, lambda: self._metadata(remote))
        if not meta.commit_hash:
            raise DataError(f"{self.repo_id}@{self.revision}: the hub did not say which commit this is")
        self.commit = meta.commit_hash
        return self.commit

    def fetch(self, remote: str, dest: Path) -> str:
        """Make `dest` hold the repo's `remote` file, checked against the hub; return its sha256."""
        state = {"force": False}

        def attempt() -> str:
            meta = self._metadata(remote)
            try:
                return check_against_hub(dest, meta.size, meta.etag)  # already here from an earlier run
            except _Mismatch:
                pass
            cached = self._download(remote, force=state["force"])
            try:
                digest = check_against_hub(cached, meta.size, meta.etag)
            except _Mismatch:
                state["force"] = True  # the cached copy is bad: fetch it afresh next time
                raise
            _place(cached, dest)
            return digest

        return self._retrying(remote, attempt)

    def _retrying(self, remote: str, action: Callable[[], Any]) -> Any:
        where = f"{self.repo_id}@{self.revision}: {remote}"
        for number in range(1, self.attempts + 1):
            try:
                return action()
            except DataError:
                raise
            except Exception as error:  # noqa: BLE001 - classified right below
                if not _is_transient(error):
                    if final := _final_error(where, error):
                        raise final from None
                    raise  # not a hub or network problem: a bug, keep its traceback
                if number == self.attempts:
                    raise DataError(f"{where}: failed after {self.attempts} attempts: {_one_line(error)}") from None
                wait = self.backoff * 2 ** (number - 1)
                reason = _one_line(error)
                self.log(f"data:hub {remote}: attempt {number} of {self.attempts} failed ({reason}); retrying in {wait:g}s")
                time.sleep(wait)
        raise AssertionError("unreachable")


# ---------------------------------------------------------------- the plan


def _repo_path(value: Any, what: str, where: str) -> str:
    """A path from the upstream manifest, refused if it could leave the repo or the data directory."""
    pure = PurePosixPath(value) if isinstance(value, str) and value else None
    if pure is None or pure.is_absolute() or ".." in pure.parts or "\\" in value:
        raise DataError(f"{where}: manifest.json: {what} path {value!r} escapes the data directory")
    return pure.as_posix()


CASEOPS_MARK = "caseops"  # e.g. sp8192_lossless_caps_caseops_v1_reserved


def plan_files(upstream: Any, *, variant: str, remote_root: str, train_shards: int, where: str) -> tuple[list[Wanted], dict]:
    """The files to fetch for one variant, and its tokenizer entry, from the export's manifest.json."""
    name = f"fineweb10B_{variant}"
    datasets = upstream.get("datasets") if isinstance(upstream, dict) else None
    if not isinstance(datasets, list):
        raise DataError(f'{where}: manifest.json has no "datasets" list')
    entry = next((d for d in datasets if isinstance(d, dict) and d.get("name") == name), None)
    if entry is None:
        names = ", ".join(sorted(str(d.get("name")) for d in datasets if isinstance(d, dict))) or "none"
        raise DataError(f"{where}: manifest.json has no dataset named {name} (it has: {names})")
    stats = entry.get("stats") or {}
    files_val, files_train = stats.get("files_val"), stats.get("files_train")
    if not isinstance(files_val, int) or not isinstance(files_train, int) or files_val < 1:
        raise DataError(f"{where}: manifest.json: {name} has no usable files_val/files_train counts")
    if train_shards > files_train:
        raise DataError(f"data.hub.train_shards: {train_shards} requested, {where} has {files_train} for {name}")
    tokenizers = [t for t in upstream.get("tokenizers", []) if isinstance(t, dict)]
    tokenizer = next((t for t in tokenizers if t.get("name") == entry.get("tokenizer_name")), None)
    if tokenizer is None:
        raise DataError(f"{where}: manifest.json has no tokenizer {entry.get('tokenizer_name')!r}")

    prefix = f"{remote_root.strip('/')}/" if remote_root.strip("/") else ""
    dataset_dir = _repo_path(entry.get("path", f"datasets/{name}"), "dataset", where)
    wanted = []
    for key in ("model_path", "vocab_path", "path"):
        if key in tokenizer:
            remote = _repo_path(tokenizer[key], "tokenizer", where)
            wanted.append(Wanted(prefix + remote, "tokenizer" + PurePosixPath(remote).suffix, "tokenizer"))
    if not any(w.local == "tokenizer.model" for w in wanted):
        raise DataError(f"{where}: manifest.json: tokenizer {tokenizer.get('name')!r} has no .model file")
    # A CaseOps export carries per-token byte sidecars next to its val shards (its BPB's bytes).
    splits = (("val", files_val), *((("val_bytes", files_val),) if CASEOPS_MARK in variant else ()), ("train", train_shards))
    for split, count in splits:
        names = [f"fineweb_{split}_{i:06d}.bin" for i in range(count)]
        wanted += [Wanted(f"{prefix}{dataset_dir}/{name}", name, split) for name in names]
    return wanted, tokenizer


# ---------------------------------------------------------------- the stage


def _up_to_date(out: Path, source: dict[str, Any], hashes: bool, log: Callable[[str], None]) -> dict | None:
    """The existing manifest, if it was written for these settings and every file still checks out."""
    manifest_path = out / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    try:
        manifest = load_manifest(manifest_path)
        recorded = {k: v for k, v in manifest.get("source", {}).items() if k != "commit"}
        if recorded != source:
            return None
        summary = verify_dataset(manifest_path, hashes=hashes)
    except (DataError, ValueError) as error:
        log(f"data:hub existing files need repair: {error}")
        return None
    checked = "size, header and sha256" if hashes else "size and header"
    log(f"data:hub up to date: {summary['files']} files checked ({checked})")
    return manifest


def _remove_unplanned_shards(out: Path, wanted: list[Wanted]) -> None:
    keep = {w.local for w in wanted}
    for path in out.glob(SHARD_NAME_GLOB):
        if path.name not in keep:
            path.unlink()


def download_dataset(
    out_dir,
    *,
    repo_id: str,
    revision: str,
    remote_root: str,
    variant: str,
    train_shards: int,
    hashes: bool = False,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_SECONDS,
    endpoint: str | None = None,
    cache_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Fetch (or resume, or repair) the dataset into `out_dir` and write our manifest last.

    With `hashes`, a complete earlier download is re-hashed before it is
    trusted; without, its sizes and shard headers are enough. Files found in
    place during a resume or repair are always hashed against the hub.
    """
    if not interactive():
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # per-chunk redraws would flood a log file; we log a line per file instead
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = {"kind": "hub", "repo_id": repo_id, "revision": revision, "remote_root": remote_root,
              "dataset": f"fineweb10B_{variant}", "train_shards": train_shards}
    if (manifest := _up_to_date(out, source, hashes, log)) is not None:
        return manifest
    (out / MANIFEST_NAME).unlink(missing_ok=True)

    hub = Hub(repo_id, revision, attempts=attempts, backoff=backoff, endpoint=endpoint, cache_dir=cache_dir, log=log)
    prefix = f"{remote_root.strip('/')}/" if remote_root.strip("/") else ""
    where = f"{repo_id}@{revision}"
    commit = hub.resolve(f"{prefix}manifest.json")
    _log_commit(where, revision, commit, log)
    upstream_entry = _fetch_entry(hub, Wanted(f"{prefix}manifest.json", UPSTREAM_MANIFEST, "upstream"), out, "upstream", log)
    upstream = _read_upstream(out / UPSTREAM_MANIFEST, where)
    wanted, tokenizer = plan_files(
        upstream, variant=variant, remote_root=remote_root, train_shards=train_shards, where=where
    )
    _remove_unplanned_shards(out, wanted)
    files = [upstream_entry] + [_fetch_entry(hub, w, out, f"{n}/{len(wanted)}", log) for n, w in enumerate(wanted, 1)]
    manifest = {
        "format": "pgolf-data/1",
        "source": {**source, "commit": commit},
        **({"variant": variant} if CASEOPS_MARK in variant else {}),  # byo links the folder by this name
        "tokenizer": _tokenizer_block(out, tokenizer, where),
        "stats": split_totals(files),
        "files": files,
    }
    write_manifest(out, manifest)
    log(f"data:hub wrote {len(files)} files and {MANIFEST_NAME} to {out}")
    return manifest


def _log_commit(where: str, revision: str, commit: str, log: Callable[[str], None]) -> None:
    """Say which commit is being fetched (and whether a token is in use, never the token itself)."""
    pin = "" if COMMIT_RE.fullmatch(revision) else f" (pin data.hub.revision: {commit} for a reproducible record)"
    token = "; using HF_TOKEN" if os.environ.get("HF_TOKEN") else ""
    log(f"data:hub {where} is commit {commit}{pin}{token}")


def _read_upstream(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{where}: manifest.json is not valid JSON ({error})") from None


def _tokenizer_block(out: Path, tokenizer: dict, where: str) -> dict[str, Any]:
    """Our manifest's tokenizer entry; a SentencePiece model must carry the ids the record code assumes."""
    vocab_size = tokenizer.get("vocab_size")
    kind = tokenizer.get("kind", "sentencepiece_bpe")
    if str(kind).startswith("sentencepiece"):
        expected = vocab_size if isinstance(vocab_size, int) else None
        load_checked_model(out / "tokenizer.model", expected, where=f"{where}: manifest.json tokenizer")
    return {"kind": kind, "vocab_size": vocab_size, "bos_id": tokenizer.get("bos_id", 1),
            "eos_id": tokenizer.get("eos_id", 2), "model": "tokenizer.model"}


def _fetch_entry(hub: Hub, item: Wanted, out: Path, counter: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Fetch one file, log a line about it, and return its manifest entry."""
    started = time.perf_counter()
    dest = out / item.local
    digest = hub.fetch(item.remote, dest)
    size = dest.stat().st_size
    seconds = time.perf_counter() - started
    log(f"data:hub [{counter}] {item.local}: {size} bytes in {seconds:.1f}s ({size / 1e6 / max(seconds, 1e-6):.1f} MB/s)")
    entry = {"path": item.local, "split": item.split, "bytes": size, "sha256": digest}
    if item.split in ("val", "train"):
        entry["num_tokens"] = read_header(dest)
    return entry
