"""Score-first from evidence: what the record's own script does at eval time, not what its
submission.json says about itself.

Three known shapes that are not score-first (the challenge's Issue #1017 conditions C1/C3), read
from the script's syntax tree (a self-extracting script through its decoded source):

- **fit before score**: inside a loop over validation windows or chunks, a `.backward()` (an
  optimizer fitting something) runs before the loop's scored loss is accumulated, and no scored
  loss of that iteration was accumulated before it. PR #1313's `eval_val_slot` (delta and logit
  bias fitted on the window's scored targets, then those targets scored) is the type; it is named
  SLOT when the function speaks of SLOT, else test-time training.
- **training on validation before scoring**: a function that slices the validation tokens and
  calls `.backward()`, with no scored loss accumulated anywhere in it (a pre-eval TTT pass).
- **target-keyed cache**: an n-gram cache whose hash key mixes in the target token
  (`ctx_hash ^ (tgt * prime)`), so the probability of the true next token is looked up by the
  answer itself; or whose probability of the target is its hashed (context, target) count over
  the context count (`full_counts / ctx_counts`), which collisions keep from summing to one.

Score-first TTT (#549 and the merged frontier: score a chunk under no_grad, then train on it) has
its scored loss accumulated before the `.backward()` of the same iteration and passes. Every
finding carries a confidence and the quoted code line (`train_gpt.py:LINE: text`). Our own
records print a causality audit with their final score: where it passed, that runtime evidence
stands and the script is not read.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from pgolf.discover import code_files, script_source
from pgolf.folder import Folder

SCORED_SUM = re.compile(r"(loss|nll|bpb|bits?|bytes?|tokens?|tok)_?(sum|total|count|cnt|acc|accum)\b|\b(total|sum|running)_(loss|nll|bits|bytes|tokens|bpb)|\bnll_list|\blosses\b", re.I)
SCORED_SUM_LOWER = re.compile(SCORED_SUM.pattern)  # the same on lower-cased text: twice as fast as re.I
TRAINING_SUM = re.compile(r"epoch|train|fit|adapt|ttt_loss|slot_loss", re.I)
VAL_NAME = re.compile(r"\bval|valid", re.I)
TARGET_KEY = re.compile(r"\^\s*\(?\s*\(?\s*(?:tgt|target|targets|tg|tok_next|next_tok|y)\w*(?:\[[^\]]*\])?\s*\)?\s*\*\s*[\w.]*prime", re.I)
NEGATION = re.compile(r"\bno\b|\bnot\b|n't|without|disabled|\boff\b|instead of|legal|score-first|score first|causal")
TARGET_HASH_CALL = re.compile(r"hash_full\w*\([^)]*\b(?:tgt|target)\w*", re.I)
# The target's probability as its (context, target) count over the context count, `p =
# min(full_counts, ctx_counts) / max(ctx_counts, 1)`: with hashed tables the pair buckets collide,
# so the numbers do not sum to one over the vocabulary (not a normalized distribution).
COUNT_RATIO = re.compile(r"=.*\b\w*(?:full|pair|correct|tgt|target)\w*\b.*/\s*\(?\s*(?:np\.maximum\(\s*)?\w*ctx_?c\w*", re.I)


@dataclass(frozen=True)
class Finding:
    shape: str  # "slot_fit_on_scored", "ttt_fit_before_score", "ttt_on_val_before_scoring", "target_keyed_cache"
    confidence: str  # "high", "medium"
    where: str  # `train_gpt.py:LINE: text`
    function: str
    markers: tuple = ()  # what the flagged path prints to the log (heads of its log lines)

    def message(self) -> str:
        what = {
            "slot_fit_on_scored": "not score-first: SLOT fits on the scored targets before scoring them",
            "ttt_fit_before_score": "not score-first: test-time training steps on validation windows before they are scored",
            "ttt_on_val_before_scoring": "not score-first: test-time training on validation tokens before they are scored",
            "target_keyed_cache": "not score-first: the eval cache is keyed by the target token",
        }[self.shape]
        return f"{what} ({self.confidence} confidence; {self.function}: {self.where})"


# ----------------------------------------------------------------------------- syntax tree


def _is_backward(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward"


EVAL_FUNCTION = re.compile(r"eval|ttt", re.I)


def _slices_val(node: ast.AST, fn=None) -> bool:
    """Whether `node` slices validation tokens: a `val...` name, or (in an eval or TTT function)
    the token tensor it was given (`all_tokens[ds + ws : ...]`)."""
    params = {a.arg for a in fn.args.args} if fn is not None and EVAL_FUNCTION.search(fn.name) else set()
    return any(isinstance(n, ast.Subscript) and (VAL_NAME.search(ast.unparse(n.value))
               or isinstance(n.value, ast.Name) and n.value.id in params and n.value.id.lower().endswith("tokens")) for n in ast.walk(node))


FUNCTION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)


@functools.lru_cache(maxsize=4)
def parse_source(source: str) -> ast.Module | None:
    """The syntax tree of a script, or None when it does not parse. The score-first and byte-count
    checks of one folder read the same scripts one after the other: each is parsed once."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def function_defs(tree: ast.AST) -> list:
    """Every function of `tree`, methods and nested functions included, found through statements
    only (a walk over every expression node costs several times more)."""
    return list(_Functions._defs(tree))


class _Functions:
    """The script's functions, found by walking statements only; a function's own nodes (not those
    of functions nested in it) are walked when first asked for, with their parents."""

    def __init__(self, tree: ast.AST, lines: list[str]):
        self.defs = list(self._defs(tree))
        self.lines = lines
        self.parent: dict = {}
        self._own: dict = {}

    @classmethod
    def _defs(cls, node):
        for field in ("body", "orelse", "finalbody", "handlers"):
            for child in getattr(node, field, None) or []:
                if isinstance(child, FUNCTION_TYPES):
                    yield child
                yield from cls._defs(child)

    def text(self, fn) -> str:
        return "\n".join(self.lines[fn.lineno - 1:fn.end_lineno])

    def own(self, fn) -> list:
        if fn not in self._own:
            nodes, todo = [], [fn]
            while todo:
                node = todo.pop()
                for child in ast.iter_child_nodes(node):
                    self.parent[child] = node
                    if not isinstance(child, (*FUNCTION_TYPES, ast.Lambda)):
                        nodes.append(child)
                        todo.append(child)
            self._own[fn] = nodes
        return self._own[fn]


def _loops_around(parent: dict, target: ast.AST) -> list[ast.AST]:
    """The loops enclosing `target` inside its function, innermost first."""
    out, node = [], parent.get(target)
    while node is not None and not isinstance(node, FUNCTION_TYPES):
        if isinstance(node, (ast.For, ast.While)):
            out.append(node)
        node = parent.get(node)
    return out


def _calls_to(node: ast.AST, names: set) -> list[ast.Call]:
    return [n for n in node if isinstance(n, ast.Call) and (getattr(n.func, "id", None) in names or getattr(n.func, "attr", None) in names)]


def _scored_before(parent: dict, own: list, at: ast.AST, scorers: set) -> bool:
    """Whether, in a loop around `at`, a scored loss is accumulated (or a scoring function called)
    before `at` in the same iteration."""
    scored = sorted(set(_scored_sums_own(own)) | {c.lineno for c in _calls_to(own, scorers)})
    for loop in _loops_around(parent, at):
        if any(loop.lineno <= ln < at.lineno for ln in scored):
            return True
    return False


def _scored_sums_own(own: list) -> list[int]:
    """Lines that accumulate a scored loss (`loss_sum += ...`, `nll_sum.add_(...)`), not a training
    loss kept for logging (`epoch_loss_sum`, `train_loss_sum`)."""
    lines = []
    for n in own:
        if isinstance(n, ast.AugAssign):
            name = ast.unparse(n.target)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("add_", "append"):
            name = ast.unparse(n.func.value)
        else:
            continue
        if SCORED_SUM.search(name) and not TRAINING_SUM.search(name):
            lines.append(n.lineno)
    return lines


LOG_CALL = re.compile(r"log|print", re.I)


def _log_heads(nodes) -> set:
    """The fixed starts of the lines that log calls among `nodes` print (`log0(f"ttt:start lr={lr}")`
    gives `ttt:start lr=`): at least 6 characters, so that a log line can be told by them."""
    out = set()
    for n in nodes:
        if not (isinstance(n, ast.Call) and LOG_CALL.search(getattr(n.func, "id", None) or getattr(n.func, "attr", "") or "") and n.args):
            continue
        arg = n.args[0]
        head = arg.value if isinstance(arg, ast.Constant) else (
            arg.values[0].value if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant) else None)
        if isinstance(head, str) and len(head.strip()) >= 6 and "\n" not in head.strip():
            out.add(head.strip())
        elif isinstance(arg, ast.JoinedStr) and len(arg.values) > 1 and isinstance(arg.values[1], ast.Constant):
            # `f"{label} param_set:{p} ..."`: a field first (the line's first word), then fixed text;
            # the score fields every eval prints (`_exact val_loss:`) tell no path apart.
            rest = str(arg.values[1].value).split("\n")[0]
            if len(rest.strip()) >= 6 and not re.search(r"exact|val_loss|val_bpb", rest):
                out.add(FIELD + rest.rstrip())
    return out


FIELD = "{}"  # a marker that starts with a format field: the line's first word is any word


def _marker_at(head: str) -> str:
    """The regex of a log line that starts with marker `head` (after a timestamp-like word)."""
    if head.startswith(FIELD):
        return rf"^\S*{re.escape(head[len(FIELD):])}"
    return rf"^(?:\S+ )?{re.escape(head)}"


def _markers(fns: _Functions, fn) -> tuple:
    """Log-line heads that show `fn` ran: its own log calls, and those in the `if` block around
    each of its call sites (`log0("ttt:start ...")` before `ttt_adapt(...)`)."""
    heads = _log_heads(fns.own(fn))
    for g in fns.defs:
        if g is fn or f"{fn.name}(" not in fns.text(g):
            continue
        for c in _calls_to(fns.own(g), {fn.name}):
            node = fns.parent.get(c)
            while node is not None and not isinstance(node, (ast.If, *FUNCTION_TYPES)):
                node = fns.parent.get(node)
            if isinstance(node, ast.If):
                heads |= _log_heads(n for stmt in node.body for n in ast.walk(stmt))
    return tuple(sorted(heads))


def _scored_on_a_later_pass(fns: _Functions, fn, line: int, loops: list) -> bool:
    """Whether the scoring at `line` runs under an `if` that compares the variable of a loop around
    the fit (`for epoch in range(n)` ... `if epoch == n - 1:`): scored on one pass, fitted on all."""
    counters = {lp.target.id for lp in loops if isinstance(lp, ast.For) and isinstance(lp.target, ast.Name)}
    for node in fns.own(fn):
        if getattr(node, "lineno", None) != line or not isinstance(node, (ast.AugAssign, ast.Call)):
            continue
        up = fns.parent.get(node)
        while up is not None and up is not fn:
            if isinstance(up, ast.If) and isinstance(up.test, ast.Compare) and any(
                    isinstance(n, ast.Name) and n.id in counters for n in ast.walk(up.test)):
                return True
            up = fns.parent.get(up)
        return False
    return False


def _judge(fns: _Functions, fn, b, loops, scored, scorers, slot, quote) -> Finding | None:
    """The shape of one `.backward()` on validation tokens, or None when it is score-first."""
    if not scored:
        # A training pass on validation tokens: fine only where every caller scored them first.
        callers = [g for g in fns.defs if g is not fn and f"{fn.name}(" in fns.text(g)]
        sites = [(g, c) for g in callers for c in _calls_to(fns.own(g), {fn.name})]
        if sites and all(_scored_before(fns.parent, fns.own(g), c, scorers) for g, c in sites):
            return None
        return Finding("ttt_on_val_before_scoring", "medium", quote(b.lineno), f"{fn.name}()")
    for loop in loops:
        inside = [ln for ln in scored if loop.lineno <= ln <= (loop.end_lineno or ln)]
        if not inside:
            continue
        before = [ln for ln in inside if ln < b.lineno]
        if before and all(_scored_on_a_later_pass(fns, fn, ln, loops) for ln in before):
            # Scored only on the last pass of an outer loop (`if epoch == epochs - 1:`), trained on
            # every pass: the earlier passes trained on the chunk before it is scored.
            return Finding("ttt_on_val_before_scoring", "medium", quote(b.lineno), f"{fn.name}()")
        if before:
            return None  # scored before the fit in the same iteration: score-first
        shape = "slot_fit_on_scored" if slot else "ttt_fit_before_score"
        return Finding(shape, "high" if slot else "medium", quote(b.lineno), f"{fn.name}()")
    # Scoring later in the function, after the loops of the fit, scores the tokens it trained on
    # (a pre-eval TTT inline in main(), then the sliding eval); scoring only before it does not.
    if any(ln > (loops[-1].end_lineno or b.lineno) for ln in scored):
        return Finding("ttt_on_val_before_scoring", "medium", quote(b.lineno), f"{fn.name}()")
    if any(ln < b.lineno for ln in scored):
        return None
    return Finding("ttt_on_val_before_scoring", "medium", quote(b.lineno), f"{fn.name}()")


@functools.lru_cache(maxsize=256)
def analyse(source: str, name: str) -> list[Finding]:
    """Findings in one script's source (`name` is how messages name the file). Many folders ship
    the same script: the result is cached on the text."""
    out: list[Finding] = []
    lines = source.splitlines()
    quote = lambda ln: f"{name}:{ln}: {lines[ln - 1].strip()[:160]}"
    if ".backward(" in source:
        tree = parse_source(_fit_relevant(source)) or parse_source(source)
        if tree is not None:
            out += _fits(_Functions(tree, lines), quote)
    # Each pattern only where the words it needs are on the line (most lines have none of them).
    low = source.lower()
    checks = [(words, pattern) for words, pattern in ((("^", "prime"), TARGET_KEY), (("hash_full",), TARGET_HASH_CALL), (("ctx", "/"), COUNT_RATIO))
              if all(w in low for w in words)]
    for i, line in enumerate(lines if checks else (), 1):
        code = line.split("#", 1)[0].lower()
        if any(all(w in code for w in words) and pattern.search(code) for words, pattern in checks):
            out.append(Finding("target_keyed_cache", "high", quote(i), "n-gram cache"))
            break
    return out


TOP_DEF = re.compile(r"^(?:@|def |async def |class )", re.M)


def _fit_relevant(source: str) -> str:
    """`source` with the top-level functions and classes `_fits` never reads blanked out (their lines
    left empty, so line numbers stay): kept are those that call `.backward(`, accumulate a scored
    loss (SCORED_SUM), or call a function of the former. Parsing the model classes and helpers of a
    100 KB script costs most of the score-first check; the caller parses the whole script when
    this cut does not parse."""
    starts = [m.start() for m in TOP_DEF.finditer(source)]
    if not starts:
        return source
    chunks = [(a, b) for a, b in zip(starts, starts[1:] + [len(source)])]
    fitting = {name for a, b in chunks if ".backward(" in source[a:b] for name in re.findall(r"def\s+(\w+)", source[a:b])}
    calls = re.compile("|".join(re.escape(name) + r"\(" for name in sorted(fitting))) if fitting else None
    out, last = [], 0
    for a, b in chunks:
        text = source[a:b]
        out.append(source[last:a])
        keep = ".backward(" in text or (calls is not None and calls.search(text)) or SCORED_SUM_LOWER.search(text.lower())
        out.append(text if keep else "\n" * text.count("\n"))
        last = b
    return "".join(out)


def _fits(fns: _Functions, quote) -> list[Finding]:
    scorers = None  # the functions that accumulate a scored loss: found once a fit on validation data is
    out = []
    for fn in fns.defs:
        low = fn.name.lower()
        if re.search(r"warmup|calib|gptq|hessian", low) or ".backward(" not in fns.text(fn):
            continue  # calibration passes; functions that fit nothing
        own = fns.own(fn)
        backwards = sorted((n for n in own if _is_backward(n)), key=lambda n: n.lineno)
        if not backwards:
            continue  # the .backward( is in a nested function
        fits = []
        for b in backwards:
            loops = _loops_around(fns.parent, b)
            if not loops or not _slices_val(loops[-1], fn):
                continue  # a fit on training data (the training loop, distillation)
            if any(re.search(r"warm", ast.unparse(lp.iter if isinstance(lp, ast.For) else lp.test), re.I) for lp in loops):
                continue  # a compile warm-up whose fitted parameters are thrown away
            fits.append((b, loops))
        if not fits:
            continue
        if scorers is None:
            scorers = {g.name for g in fns.defs if SCORED_SUM.search(fns.text(g)) and _scored_sums_own(fns.own(g))}
        slot = "slot" in low or any("slot" in ast.unparse(n).lower() for n in backwards)
        scored = sorted(set(_scored_sums_own(own)) | {c.lineno for c in _calls_to(own, scorers - {fn.name})})
        for b, loops in fits:
            finding = _judge(fns, fn, b, loops, scored, scorers, slot, quote)
            if finding is not None:
                out.append(dataclasses.replace(finding, markers=_markers(fns, fn)))
                break
    return out


def script_findings(script: Path, files: list[Path] | None = None) -> list[Finding]:
    """Findings in a record's script and every code file it uses (`files`, when already found)."""
    out = []
    for path in code_files(script) if files is None else files:
        if path.suffix != ".py":
            continue
        source, packed = script_source(path)
        out += analyse(source, path.name + (" (decoded)" if packed else ""))
    return out


# ----------------------------------------------------------------------------- the check


def _ran(f: Folder, finding: Finding) -> bool:
    """Whether the logs show the flagged eval ran: the claimed line (or any score line) is a SLOT,
    TTT or cache line, or the log names the method."""
    words = {"slot_fit_on_scored": ("slot",), "ttt_fit_before_score": ("ttt", "adapt", "slot"),
             "ttt_on_val_before_scoring": ("ttt", "adapt", "test-time", "test_time"),
             "target_keyed_cache": ("ngram", "n-gram", "backoff", "phrase")}[finding.shape]
    for _, log in f.logs.values():
        labels = " ".join(ln.label.lower() for ln in log.lines) + " " + (log.final_label or "").lower()
        if any(w in labels for w in words) or any(w in log.mentions for w in words):
            return True
    readme = f.root / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").lower().splitlines():
            if any(w in line for w in words) and not NEGATION.search(line):
                return True
    return False


def _path_not_behind_claim(f: Folder, finding: Finding) -> str | None:
    """Why the flagged code cannot be behind the claimed scores, from the logs' own lines (at a
    line's start, so the source code that upstream logs embed never counts): it prints lines and no
    log has one (another path ran, e.g. the legal TTT beside the two-pass one); or in every claimed
    log its first line comes after the claimed line (it ran after the claim was scored)."""
    if not finding.markers:
        return None
    first = {}
    for name, log in f.logs.values():
        path = f.root / name
        if not path.is_file():
            return None
        at = [text.count("\n", 0, m.start()) + 1 for head in finding.markers
              for text in [path.read_text(encoding="utf-8", errors="replace")]
              for m in [re.search(_marker_at(head), text, re.M)] if m]
        first[name] = min(at) if at else None
    if all(at is None for at in first.values()):
        return f"no log prints its lines ({', '.join(repr(h) for h in finding.markers[:2])}): that path did not run"
    if all(at is not None and log.claim_line is not None and at > log.claim_line for name, log in f.logs.values() for at in [first[name]]):
        return "its log lines come after the claimed line in every log: it ran after the claim was scored"
    return None


def check_score_first(f: Folder) -> None:
    if f.script is None or not f.logs:
        return
    if f.ours and all(log.final_audit == "pass" for _, log in f.logs.values()):
        return  # our causality audit ran on the real eval code and passed
    if not any(_ran(f, Finding(shape, "", "", "")) for shape in ("ttt_on_val_before_scoring", "slot_fit_on_scored", "target_keyed_cache")):
        return  # nothing in the logs or README speaks of an adaptive eval: no finding could be a problem
    findings = script_findings(f.script, f.code())
    for finding in list(findings):
        # A fit before scoring that is not SLOT may fit on context only (a prefix of the window):
        # the syntax tree cannot tell, so it stays a note.
        if finding.shape != "ttt_fit_before_score" and _ran(f, finding):
            if (why := _path_not_behind_claim(f, finding)) is not None:
                f.note(f"{finding.message()}; {why}")
                findings = [x for x in findings if x != finding]
                continue
            f.problem(finding.message())
            return
    if findings:
        f.note(f"{findings[0].message()}; the logs do not show that eval running")
