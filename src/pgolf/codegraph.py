"""What code a stage runs, derived from the code itself: the files whose bytes key each stage.

A stage's id hashes the code it runs, so that editing that code reruns the stage and nothing else.
Nobody lists those files by hand; they are the closure of the stage's entry under imports:

- record code (`workflow/record/*.py`, shipped in `train_gpt.py`): the sibling imports
  (`from model import GPT`), the same lines the bundler strips. The bundle's module order is the
  depth-first post-order of those imports from `entry.py`, in the order each file states them, so a
  module always comes after everything it uses.
- library code (`src/pgolf/*.py`): every `pgolf` import of a module, at any depth (imports inside
  functions included: they run too). A rule that runs `pgolf CMD` runs `cli.py`'s module level,
  then the handler of CMD: only the imports of that handler count, so each command's closure stays
  its own (cli.py imports its commands' modules inside their handlers for that reason, and for
  start-up time).
- a Snakemake `script:` (`workflow/scripts/*.py`): its `pgolf` imports, as for a library module.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = Path("src/pgolf")
RECORD = Path("workflow/record")
# `from model import GPT, GPTConfig` at the start of a line: a sibling record module's import.
SIBLING_IMPORT = re.compile(r"^from (\w+) import ", re.M)


class CodeGraphError(ValueError):
    """An entry that names no file, or a command cli.py does not define."""


# ----------------------------------------------------------------------------- record code


def sibling_imports(path: Path) -> list[str]:
    """The record modules `path` imports, in the order its lines state them. A `from X import` of
    neither a file beside it nor an installed module is a record module that is missing."""
    names = list(dict.fromkeys(SIBLING_IMPORT.findall(path.read_text(encoding="utf-8"))))
    missing = [n for n in names if not (path.parent / f"{n}.py").is_file() and importlib.util.find_spec(n) is None]
    if missing:
        raise CodeGraphError(f"record module(s) missing: {', '.join(f'{n}.py' for n in missing)} (imported by {path.name})")
    return [n for n in names if (path.parent / f"{n}.py").is_file()]


def record_closure(entries, record_dir: Path = REPO / RECORD) -> list[str]:
    """Record modules `entries` need, dependencies first (depth-first post-order of sibling imports)."""
    record_dir = Path(record_dir)
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise CodeGraphError(f"{record_dir / name}.py: import cycle among record modules")
        path = record_dir / f"{name}.py"
        if not path.is_file():
            raise CodeGraphError(f"{path}: no such record module")
        visiting.add(name)
        for dep in sibling_imports(path):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for e in entries:
        visit(e)
    return order


def record_modules(record_dir: Path = REPO / RECORD) -> list[str]:
    """Every module the shipped train_gpt.py holds, in bundle order: entry.py's closure."""
    return record_closure(["entry"], record_dir)


# ----------------------------------------------------------------------------- library code


def _pgolf_names(nodes) -> list[str]:
    """`pgolf` modules imported by the import statements among `nodes` (any depth)."""
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [a.name.split(".")[1] for a in node.names if a.name.startswith("pgolf.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pgolf":
                found += [a.name for a in node.names]
            elif node.module.startswith("pgolf."):
                found.append(node.module.split(".")[1])
    return found


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_imports(path: Path) -> list[str]:
    """Every `pgolf` module a file imports, at module level or inside functions."""
    return list(dict.fromkeys(_pgolf_names(ast.walk(_parse(Path(path))))))


def top_level_imports(path: Path) -> list[str]:
    """`pgolf` modules a file imports when it is loaded (module level, not inside functions)."""
    nodes, todo = [], [_parse(Path(path))]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo += [c for c in ast.iter_child_nodes(node) if not isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    return list(dict.fromkeys(_pgolf_names(nodes)))


def library_closure(modules, root: Path = REPO) -> list[str]:
    """`pgolf` module names `modules` need (themselves included), following every import."""
    src = Path(root) / SRC
    seen: list[str] = []
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = src / f"{name}.py"
        if not path.is_file() and (src / "__init__.py").is_file() and name.startswith("__"):
            name, path = "__init__", src / "__init__.py"  # `from pgolf import __version__`: the package itself
        if not path.is_file():
            raise CodeGraphError(f"{SRC}/{name}.py: no such module")
        seen.append(name)
        todo += module_imports(path)
    return sorted(seen)


def command_handler(command: str, root: Path = REPO) -> ast.FunctionDef:
    """cli.py's handler of `pgolf COMMAND`: the `func=` of the subparser named COMMAND."""
    tree = _parse(Path(root) / SRC / "cli.py")
    handlers = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "build_parser":
            current = None
            for stmt in node.body:
                for call in ast.walk(stmt):
                    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                        continue
                    if call.func.attr == "add_parser" and call.args and isinstance(call.args[0], ast.Constant):
                        current = call.args[0].value
                    elif call.func.attr == "set_defaults" and current:
                        for kw in call.keywords:
                            if kw.arg == "func" and isinstance(kw.value, ast.Name):
                                handlers[current] = kw.value.id
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if command not in handlers or handlers[command] not in functions:
        raise CodeGraphError(f"pgolf {command}: src/pgolf/cli.py defines no such command")
    return functions[handlers[command]]


def command_closure(command: str, root: Path = REPO) -> list[str]:
    """Library modules `pgolf COMMAND` runs: cli.py's module level, then its handler's imports."""
    handler = command_handler(command, root)
    direct = [*top_level_imports(Path(root) / SRC / "cli.py"), *_pgolf_names(ast.walk(handler))]
    return sorted({"cli", *library_closure(direct, root)})


# ----------------------------------------------------------------------------- a stage's files


def stage_code(*entries: str, root: Path = REPO) -> list[str]:
    """The repository-relative files a stage's id hashes, for entries such as

    - ``"pgolf size-gate"``: a `pgolf` command (cli.py, then its handler's closure);
    - ``"workflow/record/train.py"``: a record module run as a script (its sibling closure);
    - ``"workflow/scripts/assemble_record.py"``: a Snakemake script (itself, then its imports);
    - ``"record:*"``: every record module (what the bundler concatenates);
    - any other path: that file alone (a template, a schema).

    Sorted, so that the order of entries never changes an id.
    """
    root = Path(root)
    files: set[str] = set()
    for entry in entries:
        if entry.startswith("pgolf "):
            files.update(f"{SRC}/{m}.py" for m in command_closure(entry.split()[1], root))
        elif entry == "record:*":
            files.update(f"{RECORD}/{m}.py" for m in record_modules(root / RECORD))
        elif entry.startswith(f"{RECORD}/") and entry.endswith(".py"):
            files.update(f"{RECORD}/{m}.py" for m in record_closure([Path(entry).stem], root / RECORD))
        elif entry.endswith(".py"):
            if not (root / entry).is_file():
                raise CodeGraphError(f"{entry}: no such file")
            files.add(entry)
            files.update(f"{SRC}/{m}.py" for m in library_closure(module_imports(root / entry), root))
        else:
            if not (root / entry).is_file():
                raise CodeGraphError(f"{entry}: no such file")
            files.add(entry)
    return sorted(files)


# ----------------------------------------------------------------------------- the import graph


def import_graph(root: Path = REPO) -> dict[str, list[str]]:
    """module -> the `pgolf` modules it imports (function-level imports included)."""
    src = Path(root) / SRC
    return {p.stem: [m for m in module_imports(p) if m != p.stem] for p in sorted(src.glob("*.py"))}


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str):
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in graph:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


# ----------------------------------------------------------------------------- what each stage runs

# The entries each stage's rules run (their `shell:` commands and `script:`s; tests/test_codegraph.py
# checks every rule's commands against this table). Their closures are the files of CODE[stage].
STAGE_ENTRIES = {
    "data_docs": ("pgolf data-docs",),
    "data_hub": ("pgolf data-hub",),
    "data_local": ("pgolf data-local",),
    "train": ("pgolf data-verify", "pgolf job", "workflow/record/train.py"),
    "export": ("workflow/record/quantize.py",),
    "size": ("pgolf size-gate",),
    "eval": ("pgolf job", "workflow/record/evaluate.py"),
    "slot": ("pgolf job", "workflow/record/slot.py"),
    "ttt": ("pgolf job", "workflow/record/ttt.py"),
    "doc_ttt": ("pgolf job", "workflow/record/ttt_doc.py"),
    "bundle": ("pgolf bundle", "record:*"),
    "record": ("workflow/scripts/assemble_record.py", "workflow/templates/record_README.md.j2"),
    "verify": ("pgolf verify-record",),
    "sweep": ("workflow/scripts/sweep_table.py",),
    "byo_data": ("src/pgolf/byo_data.py",),
    "byo_run": ("pgolf data-verify", "pgolf job", "pgolf byo-run", "src/pgolf/byo_sdpa/flash_attn_interface.py"),
    "byo_check": ("pgolf byo-check",),
    "byo_record": ("workflow/scripts/assemble_byo_record.py", "workflow/templates/byo_README.md.j2"),
}


def stage_files(root: Path = REPO) -> dict[str, list[str]]:
    """Every stage's code files (see STAGE_ENTRIES)."""
    return {stage: stage_code(*entries, root=root) for stage, entries in STAGE_ENTRIES.items()}


def markdown_table(root: Path = REPO) -> str:
    """docs/reruns.md's table of what each stage's id hashes (`python -m pgolf.codegraph` prints it)."""
    rows = ["| stage | runs | files whose bytes key it (derived) |", "|---|---|---|"]
    for stage, files in stage_files(root).items():
        names = ", ".join(f"`{Path(f).name}`" if f.startswith(("src/", "workflow/record/")) else f"`{f}`" for f in files)
        rows.append(f"| {stage} | {', '.join(f'`{e}`' for e in STAGE_ENTRIES[stage])} | {names} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
