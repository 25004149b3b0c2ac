"""The child of `pgolf audit-bpb`: runs ONE record's byte-counting function on the validation
tokens and prints, as one JSON line, its byte total and the exact UTF-8 byte count of the decoded
text. It runs as a plain script (`python -I bpb_audit_child.py REQUEST.json`) in a separate
process with a stripped environment: it imports nothing from pgolf, since the code it loads is the
record's own and is not trusted.

The record's script is loaded as a module (its `main()` is not called); modules it imports that are
not installed (flash_attn_interface, triton kernels, ...) are replaced by inert stand-ins, since only
its tokenizer tables are needed.
"""

import ast
import glob
import importlib.abc
import importlib.machinery
import importlib.util
import json
import re
import sys
import types

import numpy as np

LUT_NAME = re.compile(r"^(build_\w*luts?|\w*byte_luts?|\w*bytes?_luts?\w*)$", re.I)


class _Inert(types.ModuleType):
    """A module (and any attribute of it) that can be imported, called and subclassed, doing nothing."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):
        return self

    def __mro_entries__(self, bases):
        return (object,)


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in for the top-level modules the script imports that are not installed (only those:
    libraries that probe for optional modules must still see them missing)."""

    def __init__(self, missing: set):
        self.missing = missing

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in self.missing:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        module = _Inert(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def missing_imports(source: str) -> set:
    tops = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.split(".")[0])
    out = set()
    for top in tops:
        try:
            if importlib.util.find_spec(top) is None:
                out.add(top)
        except (ImportError, ValueError):
            out.add(top)
    return out


def read_shard(path: str) -> np.ndarray:
    header = np.fromfile(path, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != 20240520:
        raise SystemExit(f"{path}: not a validation shard (bad header)")
    return np.fromfile(path, dtype="<u2", count=int(header[2]), offset=256 * 4).astype(np.int64)


def as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def call_luts(fn, sp, model_path: str, vocab_size: int):
    try:
        import torch
        device = torch.device("cpu")
    except ImportError:
        device = "cpu"
    errors = []
    for args in ((sp, vocab_size, device), (model_path, vocab_size, device), (sp, vocab_size), (model_path, vocab_size), (sp,), (model_path,)):
        try:
            out = fn(*args)
        except Exception as e:  # the record's own function: any failure means "not this signature"
            errors.append(f"{type(e).__name__}: {e}")
            continue
        if isinstance(out, (tuple, list)) and len(out) >= 3:
            return [as_array(t) for t in out[:3]]
    raise SystemExit(f"{fn.__name__}: no call shape gave three tables ({errors[-1] if errors else 'no result'})")


def main() -> None:
    request = json.load(open(sys.argv[1], encoding="utf-8"))
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=request["tokenizer"])
    source = open(request["source"], encoding="utf-8").read()
    sys.meta_path.append(_StandInFinder(missing_imports(source)))
    sys.argv = [request["script"]]
    spec = importlib.util.spec_from_loader("record_under_audit", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, request["script"], "exec"), module.__dict__)
    names = [n for n, v in vars(module).items() if callable(v) and LUT_NAME.match(n)]
    if not names:
        raise SystemExit("no byte-counting function (build_sentencepiece_luts or alike) in the script")
    fn = getattr(module, names[0])
    vocab = int(sp.vocab_size())
    base, space, boundary = call_luts(fn, sp, request["tokenizer"], vocab)
    files = sorted(glob.glob(f"{request['val']}/*val*.bin"))
    if not files:
        raise SystemExit(f"{request['val']}: no *val*.bin shards")
    tokens = np.concatenate([read_shard(f) for f in files])[: request.get("max_tokens") or None]
    prev, tgt = tokens[:-1], tokens[1:]
    counted = base[tgt].astype(np.int64) + (space[tgt].astype(bool) & ~boundary[prev].astype(bool)).astype(np.int64)
    # The exact count: the text each document decodes to, documents cut at control tokens.
    control = np.array([sp.is_control(int(t)) for t in range(vocab)])
    exact, start = 0, 0
    cuts = np.flatnonzero(control[tokens])
    for cut in list(cuts) + [len(tokens)]:
        piece = tokens[start:cut]
        if start == 0 and len(piece):  # the stream's first token is context, never a target
            piece = piece[1:] if not control[tokens[0]] else piece
        if len(piece):
            exact += len(sp.decode([int(t) for t in piece]).encode("utf-8"))
        start = cut + 1
    print(json.dumps({"function": fn.__name__, "tokens": int(len(tgt)), "lut_bytes": int(counted.sum()), "exact_bytes": int(exact)}))


if __name__ == "__main__":
    main()
