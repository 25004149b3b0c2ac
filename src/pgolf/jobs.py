"""Run a long job's workers (torchrun, python) so that they never outlive the workflow.

`pgolf job --label L --pidfile P --log LOG --clean-dir D -- torchrun ...` is what the train, eval
and byo rules run. Two processes keep the workers on a leash:

- the front, which snakemake's job shell starts: it only waits, and passes SIGTERM/SIGINT/SIGHUP on;
- the guard, forked by the front into a session of its own (so a kill of snakemake's process group
  does not reach it) and a child subreaper (orphaned workers stay below it). It starts the command,
  copies its output to the log and to stdout, and stops every process of the job, SIGTERM and
  after a grace SIGKILL, as soon as the front, the job shell or snakemake above it is gone, however
  they died. Every process of the job carries PGOLF_JOB=<run token> in its environment (torchrun
  passes it on to its workers, which it starts in sessions of their own): that token, not a process
  tree or group, finds them. The command's first process also gets PR_SET_PDEATHSIG.

Before starting, the pid file of the same job (one per stage, id and seed) tells whether its
previous run still has live processes: if so the job is refused with one line naming the PIDs.
Temporary files of the atomic writers in the output folder (`<name>.tmp<pid>` of the record code,
`.<name>.<pid>.tmp` of pgolf.shards) are removed on every exit path, and stale ones left by a killed
run at the next start; a live writer's file (a sibling job's) is never touched. A full disk (ENOSPC
in the workers' output) ends the job with one line naming the filesystem, its free bytes and what
the job writes, in place of the workers' traceback.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from pgolf.diskspace import human_bytes
from pgolf.errors import UserError

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
WATCH_INTERVAL_S = 0.25
KILL_GRACE_S = 3.0
MARKER = "PGOLF_JOB"
TEMP_PATTERNS = (re.compile(r".+\.tmp(\d+)$"), re.compile(r"^\..+\.(\d+)\.tmp$"))
DISK_FULL_MARKS = ("No space left on device", "[Errno 28]")
TRACEBACK_START = "Traceback (most recent call last)"
# torchrun's own log line about a failed worker ("E1207 01:58:38.207000 8670 .../elastic/...] failed (exitcode: 2) ...").
LAUNCHER_FAILED = re.compile(r"^[EW]\d{4} .*torch/distributed/elastic/.*failed \(exitcode")
# One-line errors of the record code that users hit after a fault, and what to run next.
RECOVERY_HINTS = (
    (re.compile(r"error: (\S+?): (?:sha256 \S+ does not match the exported artifact's|corrupt artifact)"),
     "remove {0} and rerun snakemake: the export stage rebuilds it from the trained checkpoint (nothing retrains)"),
)


class JobError(UserError):
    """The job cannot start (its previous run still lives, or the command is missing); one line."""


# ---- processes, read from /proc (Linux)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ... (None when gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot: tells a live process from a reused pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int, started: int | None = None) -> bool:
    """The process exists and is no zombie (and is the one that started at `started`, when given)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def processes_with_marker(token: str) -> list[int]:
    """Live processes whose environment carries PGOLF_JOB=token (this process excluded)."""
    needle = f"{MARKER}={token}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        if (b"\0" + needle) in (b"\0" + environ) and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def watched_ancestors(pid: int) -> list[tuple[int, int | None, str]]:
    """(pid, start time, command line) of the processes above pid whose death ends the job.

    Snakemake runs a job as `bash -c ...` (on a cluster node, below its own job step), so the chain
    from pid's parent up to the first process whose command line names snakemake is watched; with no
    snakemake above (a job started by hand) only the parent.
    """
    chain, current = [], parent_of(pid)
    while current and current > 1 and len(chain) < 8:
        cmd = command_line(current)
        chain.append((current, start_time(current), cmd))
        if "snakemake" in cmd:
            return chain
        current = parent_of(current)
    return chain[:1]


# ---- the pid file


def read_pidfile(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("token"), str) else None


def previous_run_alive(path: Path) -> list[int]:
    """PIDs of the previous run of this job that still live (its guard and every process it started)."""
    record = read_pidfile(path)
    if record is None:
        return []
    live = processes_with_marker(record["token"])
    guard = record.get("guard")
    if isinstance(guard, int) and guard not in live and alive(guard, record.get("guard_start")):
        live.insert(0, guard)
    return live


def refuse_if_running(pidfile: Path, label: str) -> None:
    live = previous_run_alive(pidfile)
    if live:
        pids = " ".join(map(str, live))
        raise JobError(
            f"{label}: its previous run is still running (PID {pids}; pid file {pidfile}):"
            f" wait for it to end, or stop it with `kill {pids}`, then rerun"
        )


# ---- temporary files


def temporary_files(folder: Path) -> list[tuple[Path, int]]:
    """(path, writer's pid) of the atomic writers' temporary files in folder."""
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            for pattern in TEMP_PATTERNS:
                if (m := pattern.match(path.name)) and path.is_file():
                    found.append((path, int(m.group(1))))
                    break
    return found


def remove_dead_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files whose writer no longer runs; a live writer's file belongs to a running job."""
    removed = []
    for path, pid in temporary_files(folder):
        if not alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ---- disk space


def disk_full_line(path, needed: int | None = None) -> str:
    """One line for ENOSPC: the filesystem (mount point, type), its free bytes, what the job writes."""
    from pgolf.diskspace import existing_parent, filesystem_type

    where = existing_parent(Path(path))
    fstype, mount = filesystem_type(where)
    free = shutil.disk_usage(where).free
    want = f"; this job writes about {human_bytes(needed)} ({needed} bytes)" if needed else ""
    return (
        f"disk full: no space left on {mount} ({fstype}) writing under {where}: {human_bytes(free)} ({free} bytes) free{want};"
        " free space or move results/ to a larger filesystem, then rerun (`pgolf doctor` estimates what the run needs)"
    )


def launcher_report_only(lines: list[str]) -> bool:
    """The held lines are just torchrun's traceback reporting that a worker failed (ChildFailedError).

    After a worker's own one-line error it says nothing new, so it is left out; any other traceback stays.
    """
    text = "".join(lines)
    return text.count(TRACEBACK_START) == 1 and "ChildFailedError" in text


def recovery_hints(lines: list[str]) -> list[str]:
    """What to run next, for the known one-line errors among lines (each hint once)."""
    hints = []
    for line in lines:
        for pattern, hint in RECOVERY_HINTS:
            if (m := pattern.search(line)) and (text := hint.format(*m.groups())) not in hints:
                hints.append(text)
    return hints


def expected_job_writes(kind: str, hparams=None, manifest=None) -> int:
    """About what a job writes, for its disk-full line: a checkpoint (train), an artifact (byo), logs."""
    from pgolf import diskspace
    from pgolf.rules import SIZE_LIMIT_BYTES

    if kind == "train" and hparams and manifest:
        model = json.loads(Path(hparams).read_text(encoding="utf-8"))["model"]
        vocab = json.loads(Path(manifest).read_text(encoding="utf-8"))["tokenizer"]["vocab_size"]
        return diskspace.model_params(model, vocab) * diskspace.CHECKPOINT_BYTES_PER_PARAM + diskspace.LOG_BYTES_PER_SEED
    if kind == "byo":
        return SIZE_LIMIT_BYTES + diskspace.LOG_BYTES_PER_SEED
    return diskspace.LOG_BYTES_PER_SEED


# ---- the guard


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog alone stops the workers


def _die_with_parent(parent: int) -> None:
    """In the command's first process, before exec: SIGKILL when the guard dies (and no start if it has)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _reap() -> None:
    """Collect exited children (the guard is a subreaper: orphans of the job end up here)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_processes(token: str, first: int | None = None, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM every process of the job (the marker, and the first process's group), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        targets = processes_with_marker(token)
        if first is not None and alive(first):
            targets.append(first)
        if not targets:
            return
        if first is not None:
            try:
                os.killpg(first, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in targets:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap()
            if not processes_with_marker(token) and not (first is not None and alive(first)):
                return
            time.sleep(0.05)


class Guard:
    """Runs the command and stops all of it when the workflow above is gone (see the module docstring)."""

    def __init__(self, command, *, label, pidfile: Path, log: Path | None, append: bool, clean_dir: Path | None, needed,
                 watched, out):
        self.command, self.label, self.pidfile, self.log_path, self.append = command, label, pidfile, log, append
        self.clean_dir, self.needed, self.watched, self.out = clean_dir, needed, watched, out
        self.token = f"{pidfile.resolve()}#{os.getpid()}.{start_time(os.getpid())}"
        self.child: subprocess.Popen | None = None
        self.log = None
        self.stop_reason: str | None = None
        self.held: list[str] = []  # a traceback and what follows, shown at the end unless one line replaces it
        self.disk_full = False
        self.seen: list[str] = []  # the command's one-line errors

    def run(self) -> int:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log = open(self.log_path, "a" if self.append else "w", encoding="utf-8")
        if self.clean_dir:
            for path in remove_dead_temporaries(self.clean_dir):
                self._emit(f"job: removed {path}, left by a killed run\n")
        me = os.getpid()
        env = {**os.environ, MARKER: self.token}
        try:
            self._write_pidfile()
            self.child = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, preexec_fn=lambda: _die_with_parent(me),
            )
        except OSError as e:
            self._cleanup()
            self._emit(f"error: {self.label}: cannot start {self.command[0]!r} ({e.strerror})\n")
            return 2
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._on_signal)
            threading.Thread(target=self._watch, daemon=True).start()
            self._pump()
            return self._finish(self.child.wait())
        finally:
            stop_processes(self.token, self.child.pid)
            self._cleanup()

    def _write_pidfile(self) -> None:
        record = {"guard": os.getpid(), "guard_start": start_time(os.getpid()), "token": self.token, "command": self.command}
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.pidfile.with_name(f".{self.pidfile.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record) + "\n")
        os.replace(temporary, self.pidfile)

    def _cleanup(self) -> None:
        if self.clean_dir:
            remove_dead_temporaries(self.clean_dir)
        record = read_pidfile(self.pidfile)
        if record and record.get("token") == self.token:
            self.pidfile.unlink(missing_ok=True)
        if self.log is not None:
            try:
                self.log.close()
            except OSError:
                pass
            self.log = None

    def _tagged(self, text: str) -> str:
        """Lines as the terminal shows them: with the job's label (`[train seed 42] step:...`), so that
        concurrent seeds' lines can be told apart; one-line errors and hints stay as they are."""
        return "".join(line if line.startswith(("error: ", "hint: ")) else f"[{self.label}] {line}"
                       for line in text.splitlines(keepends=True))

    def _pump(self) -> None:
        for raw in iter(self.child.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            if any(mark in line for mark in DISK_FULL_MARKS):
                self.disk_full = True
            if line.startswith("error: "):
                self.seen.append(line)
            if TRACEBACK_START in line or LAUNCHER_FAILED.search(line) or self.held:
                self.held.append(line)
            else:
                self._emit(line)

    def _emit(self, text: str) -> None:
        try:
            self.out.write(self._tagged(text))
            self.out.flush()
        except (OSError, ValueError):
            pass  # the reader (snakemake's job shell) may be gone; the log keeps the text
        if self.log is not None:
            try:
                self.log.write(text)
                self.log.flush()
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    self.disk_full = True

    def _finish(self, rc: int) -> int:
        held, self.held = self.held, []
        code = rc if rc >= 0 else 128 - rc
        if self.stop_reason:
            self._emit(f"error: {self.label}: {self.stop_reason}\n")
            return code or 1
        if rc != 0 and self.disk_full:
            where = self.clean_dir or (self.log_path.parent if self.log_path else Path("."))
            self._emit(f"error: {self.label}: {disk_full_line(where, self.needed)}\n")
            return 2
        if not (self.seen and launcher_report_only(held)):
            for line in held:
                self._emit(line)
        if rc != 0:
            for hint in recovery_hints(self.seen):
                self._emit(f"hint: {hint}\n")
        return code

    def _on_signal(self, signum, frame) -> None:
        self.stop_reason = f"stopped by {signal.Signals(signum).name}; its workers were stopped with it"
        threading.Thread(target=stop_processes, args=(self.token, self.child.pid), daemon=True).start()

    def _watch(self) -> None:
        while self.child.poll() is None:
            gone = next(((pid, cmd) for pid, started, cmd in self.watched if not alive(pid, started)), None)
            if gone:
                what = "snakemake" if "snakemake" in gone[1] else "the process that started it"
                self.stop_reason = f"{what} (PID {gone[0]}) is gone, so the job's workers were stopped"
                stop_processes(self.token, self.child.pid)
                return
            time.sleep(WATCH_INTERVAL_S)


# ---- the front


def run_job(command: list[str], *, label: str, pidfile, log=None, append: bool = False, clean_dir=None,
            needed: int | None = None) -> int:
    """Start the guard (see the module docstring), wait for it, and return its exit status."""
    if not command:
        raise JobError("job: no command given (pgolf job [options] -- COMMAND ...)")
    pidfile = Path(pidfile)
    refuse_if_running(pidfile, label)
    front = os.getpid()
    watched = [(front, start_time(front), "pgolf job"), *watched_ancestors(front)]
    sys.stdout.flush()
    sys.stderr.flush()
    guard = os.fork()
    if guard == 0:
        code = 1
        try:
            os.setsid()
            code = Guard(command, label=label, pidfile=pidfile, log=Path(log) if log else None, append=append,
                         clean_dir=Path(clean_dir) if clean_dir else None, needed=needed, watched=watched,
                         out=sys.stdout).run()
        finally:
            sys.stdout.flush()
            os._exit(code)

    def forward(signum, frame):
        try:
            os.kill(guard, signal.SIGTERM)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(guard, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
