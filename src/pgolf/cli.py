"""`pgolf`: the pipeline's command line. Snakemake rules call these; users can too.

Exit codes (EXIT_CODES, also in `pgolf --help`): 0 ok; 1 the thing checked is bad (a record folder,
a size over the limit, a failed preflight); 2 the user's input or environment is bad (config, data,
paths, a full disk), printed as one line starting with "error:", never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path


# Each command imports its modules inside its handler: `pgolf --help` starts fast, and a command's
# code closure (pgolf.codegraph, which keys the stages that run it) is its own handler's imports.
from pgolf import __version__
from pgolf.errors import UserError

USER_ERRORS = (UserError, FileNotFoundError)


EXIT_CODES = """exit codes:
  0  ok
  1  the thing checked is bad: a record folder (validate), a size over the limit (size),
     a failed preflight (doctor)
  2  your input or environment is bad: config, data, missing paths, a full disk, a job
     already running; one line starting with "error:" that says what to do next"""


def cmd_data_docs(args) -> None:
    from pgolf.data import DataError
    from pgolf.docs import build_docs_dataset, default_workers

    if args.tokenizer_model:
        tokenizer = {"model": args.tokenizer_model, "vocab_size": args.vocab_size}
    elif args.vocab_size is None:
        raise DataError("data-docs: give --vocab-size (train a tokenizer) or --tokenizer-model (use one)")
    else:
        tokenizer = {"vocab_size": args.vocab_size, "train_docs": args.train_docs}
    build_docs_dataset(
        args.docs,
        args.out_dir,
        num_val_docs=args.num_val_docs,
        shard_tokens=args.shard_tokens,
        tokenizer=tokenizer,
        workers=args.workers or default_workers(),
        transform=args.transform,
    )


def cmd_data_hub(args) -> None:
    from pgolf.hub import download_dataset

    download_dataset(
        args.out_dir,
        repo_id=args.repo_id,
        revision=args.revision,
        remote_root=args.remote_root,
        variant=args.variant,
        train_shards=args.train_shards,
        hashes=args.hashes,
        attempts=args.attempts,
        backoff=args.backoff,
    )


def cmd_data_local(args) -> None:
    from pgolf.local import index_local_dataset

    index_local_dataset(args.path, args.tokenizer, args.out_dir, train_shards=args.train_shards)


def cmd_data_verify(args) -> None:
    from pgolf.data import verify_dataset

    summary = verify_dataset(args.manifest, hashes=args.hashes)
    print(f"data ok: {args.manifest}: {summary['files']} files, {summary['tokens_train']} train tokens, {summary['tokens_val']} val tokens")


def cmd_check_config(args) -> None:
    from pgolf.config import check_config, load_configs

    check_config(load_configs(args.configs))
    print(f"config ok: {', '.join(args.configs)}")


def cmd_job(args) -> int:
    from pgolf.jobs import expected_job_writes, run_job

    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    needed = expected_job_writes(args.writes, args.hparams, args.manifest) if args.writes else None
    return run_job(command, label=args.label, pidfile=args.pidfile, log=args.log or args.log_append, append=bool(args.log_append),
                   clean_dir=args.clean_dir, needed=needed)


def cmd_bundle(args) -> None:
    from pgolf.bundle import bundle
    from pgolf.shards import write_atomic

    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    write_atomic(args.out, bundle(config, args.src).encode("utf-8"))


def cmd_size_gate(args) -> None:
    from pgolf.rules import SIZE_LIMIT_BYTES
    from pgolf.size import gate

    r = gate(args.code, args.model, args.out, args.limit or SIZE_LIMIT_BYTES, args.compressor, args.code_size_convention)
    if r["code_size_convention"] == "lzma":  # the frontier records' two lines, which pgolf.logparse reads
        print(f"Code size (uncompressed): {r['code_bytes_raw']} bytes")
        print(f"Code size (compressed): {r['code_bytes']} bytes")
    else:
        print(f"Code size: {r['code_bytes']} bytes")
    print(f"Total submission size {args.label}: {r['total_bytes']} bytes (model {r['model_bytes']}, limit {r['limit']}, headroom {r['headroom_bytes']})")


def cmd_size(args) -> int:
    from pgolf.rules import SIZE_LIMIT_BYTES
    from pgolf.size import detect_compressor, measure, measure_logged, resolve_targets

    args.limit = args.limit or SIZE_LIMIT_BYTES
    code, model = resolve_targets(args.paths)
    if model is None:
        r = measure_logged(code, Path(args.paths[0]), args.limit, args.code_size_convention)
    else:
        r = measure(code, model, args.limit, detect_compressor(model), args.code_size_convention)
    if args.json:
        print(json.dumps(r, indent=2, sort_keys=True))
    else:
        rows = [
            ("convention", r["code_size_convention"]),
            ("code_bytes", r["code_bytes"]),
            ("model_bytes", r["model_bytes"]),
            ("total_bytes", r["total_bytes"]),
            ("total_raw", f"{r['total_bytes_raw']} (code {r['code_bytes_raw']} bytes as shipped)"),
            ("total_lzma", f"{r['total_bytes_lzma']} (code {r['code_bytes_lzma']} bytes lzma-compressed)"),
            ("limit", r["limit"]),
            ("headroom_bytes", r["headroom_bytes"]),
            ("ok", "yes" if r["ok"] else "NO"),
            ("compressor", r["compressor"]),
        ]
        rows += [(f"sha256 {c}", d["sha256"]) for c, d in zip(code, r["code_files"].values())]
        if model is None:
            rows += [(f"logged {name}", f"{n} model bytes") for name, n in r["model_file"]["from_logs"].items()]
        else:
            rows.append((f"sha256 {model}", r["model_file"]["sha256"]))
        for key, value in rows:
            print(f"{key:15} {value}")
    return 0 if r["ok"] else 1


def cmd_verify_record(args) -> None:
    from pgolf.verify import verify_seed

    r = verify_seed(args.record, args.data, args.seed, args.size, args.out, args.keep_log_dir)
    checks = r["checks"]
    print(f"verified {args.record} seed {args.seed}: train_gpt.py alone reproduces artifact sha256 {checks['artifact_sha256']['rerun']}"
          f" and val_bpb {checks['val_bpb']['rerun']:.8f}")


def cmd_parse_log(args) -> None:
    from pgolf.logparse import require_final
    from pgolf.validate import parse_claimed

    s = require_final(parse_claimed(args.log), args.log)
    if args.json:
        print(json.dumps(s.to_json(), indent=2))
        return
    for key, value in s.to_json().items():
        if key == "train_loss":
            value = f"{len(value)} points" + (f", last step {value[-1][0]}: {value[-1][1]}" if value else "")
        elif key == "reused_labels":
            value = ", ".join(f"{k}_exact x{n}" for k, n in value.items()) or "none"
        print(f"{key:18} {value}")


def _json_arg(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{what}: not JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise UserError(f"{what}: expected a JSON object")
    return value


def cmd_byo_run(args) -> None:
    from pgolf.byo import run_script

    run_script(args.script, args.manifest, _json_arg(args.settings, "--settings"), args.seed, args.out_dir)


def cmd_byo_check(args) -> None:
    from pgolf.byo_record import write_check

    c = write_check(args.out, args.log, args.artifact, args.script, _json_arg(args.limits, "--limits"))
    m, size, t = c["metrics"], c["size"], c["times"]
    fmt = lambda x: "not logged" if x["seconds"] is None else f"{x['seconds']:.3f} s (limit {x['limit_s']:g})"
    print(f"{m['final_label']} val_loss:{m['final_val_loss']} val_bpb:{m['final_val_bpb']}")
    print(f"size: code {size['code_bytes']} + model {size['model_bytes']} = {size['total_bytes']} bytes (limit {size['limit']})")
    print(f"train: {fmt(t['train'])}; eval: {fmt(t['eval'])}")


def cmd_audit_bpb(args) -> int:
    """Runs the record's own byte-counting code (in a child process): see pgolf.bpbaudit."""
    from pgolf.bpbaudit import AuditError, audit

    try:
        result = audit(args.record, args.tokenizer, args.val, timeout=args.timeout, max_tokens=args.max_tokens)
    except AuditError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print(result.line())
    return 0 if result.ok else 1


def add_audit_bpb_parser(sub) -> None:
    p = sub.add_parser("audit-bpb", help="RUNS THE RECORD'S CODE (child process, stripped env, time limit): its byte count vs the decoded text's UTF-8 bytes; exit 1 when > 0.1%% off")
    p.add_argument("record", metavar="RECORD_DIR")
    p.add_argument("--tokenizer", required=True, help="the SentencePiece .model the record scores with")
    p.add_argument("--val", required=True, help="folder of fineweb_val_*.bin shards")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before the child is killed (default 300)")
    p.add_argument("--max-tokens", type=int, default=None, help="audit only the first N validation tokens")
    p.set_defaults(func=cmd_audit_bpb)


def cmd_validate(args) -> int:
    from pgolf.validate import format_report, validate_record

    for path in args.records:
        if not Path(path).is_dir():
            what = "is a file, not a record folder" if Path(path).exists() else "no such record folder"
            raise FileNotFoundError(f"{path}: {what}")
    reports = [validate_record(path) for path in args.records]
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        for r in reports:
            print("\n".join(format_report(r)))
    return 0 if all(r.ok for r in reports) else 1


def cmd_doctor(args) -> int:
    """The preflight table of the workflow (config.yaml, then the given overlays) on this machine."""
    from pgolf import doctor
    from pgolf.config import ConfigError, check_config, load_configs

    configs = list(args.configs)
    if Path("config.yaml").is_file() and (not configs or Path(configs[0]).resolve() != Path("config.yaml").resolve()):
        configs.insert(0, "config.yaml")
    if not configs:
        raise ConfigError("doctor: no config.yaml here: run it from the repository root or name the config files")
    config = load_configs(configs)
    check_config(config)
    try:
        gpus, source = doctor.visible_gpus()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    checks = doctor.preflight(config, machine_gpus=gpus, gpu_source=source, results=args.results, cluster=args.cluster)
    checks.append(doctor.lock_check(Path("."), Path(args.results)))
    print(doctor.format_table(checks, f"pgolf doctor ({', '.join(configs)})"))
    failed = doctor.failures(checks)
    for check in failed:
        print(f"preflight: {check.message}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pgolf", description="Parameter Golf record pipeline tools.", epilog=EXIT_CODES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"pgolf {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data-docs", help="docs JSONL -> tokenizer -> shards -> manifest.json")
    p.add_argument("--docs", required=True, help='JSONL (.jsonl, .jsonl.xz, .jsonl.gz), one {"text": ...} per line')
    p.add_argument("--out-dir", required=True)
    p.add_argument("--num-val-docs", type=int, required=True, help="the first N documents are validation")
    p.add_argument("--shard-tokens", type=int, required=True)
    p.add_argument("--vocab-size", type=int, help="train a tokenizer of this size on the train documents")
    p.add_argument("--train-docs", type=int, default=0, help="train it on the first N train documents (0 = all)")
    p.add_argument("--tokenizer-model", help="use this SentencePiece model instead of training one")
    p.add_argument("--workers", type=int, default=0, help="encoding processes (0 = all cores, 1 = this process)")
    p.add_argument("--transform", default=None, help="lossless_caps_caseops_v1: CaseOps text, reserved operators, val byte sidecars")
    p.set_defaults(func=cmd_data_docs)

    p = sub.add_parser("data-hub", help="download the challenge's FineWeb export from the Hugging Face hub")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--revision", required=True)
    p.add_argument("--remote-root", default="datasets")
    p.add_argument("--variant", default="sp1024")
    p.add_argument("--train-shards", type=int, required=True)
    p.add_argument("--hashes", action="store_true", help="re-hash files already present before trusting them")
    p.add_argument("--attempts", type=int, default=4, help="tries per file before giving up (transient errors)")
    p.add_argument("--backoff", type=float, default=2.0, help="seconds before the first retry, doubled after each")
    p.set_defaults(func=cmd_data_hub)

    p = sub.add_parser("data-local", help="check a dataset directory you already have and write a manifest pointing at it")
    p.add_argument("--path", required=True, help="directory with fineweb_{val,train}_NNNNNN.bin")
    p.add_argument("--tokenizer", required=True, help="its SentencePiece .model")
    p.add_argument("--train-shards", type=int, default=0, help="use the first N train shards (0 = all)")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_data_local)

    p = sub.add_parser("data-verify", help="check every file a data manifest lists (size, shard header; --hashes: sha256)")
    p.add_argument("manifest")
    p.add_argument("--hashes", action="store_true")
    p.set_defaults(func=cmd_data_verify)

    p = sub.add_parser("doctor", help="can this machine run the workflow? GPUs, disk, hub, FlashAttention (exit 1 when not)")
    p.add_argument("configs", nargs="*", help="config overlays after config.yaml, as given to snakemake --configfile")
    p.add_argument("--results", default="results", help="the results folder (default: results)")
    p.add_argument("--cluster", action="store_true", help="jobs run through a cluster executor (SLURM): no local GPU count")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("check-config", help="validate config files (later ones overlay earlier ones)")
    p.add_argument("configs", nargs="+")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("job", help="run a long job's command so that it dies with the workflow; one run per pid file")
    p.add_argument("--label", required=True, help="the job in messages, e.g. 'train seed 42'")
    p.add_argument("--pidfile", required=True, help="one per job: a second start while the first one's processes live is refused")
    log = p.add_mutually_exclusive_group()
    log.add_argument("--log", help="write the command's output here too (stdout gets it as well)")
    log.add_argument("--log-append", help="as --log, appending to what the file holds")
    p.add_argument("--clean-dir", help="the job's output folder: temporary files of dead writers are removed there")
    p.add_argument("--writes", choices=("train", "eval", "byo"), help="estimate what the job writes, for the disk-full line")
    p.add_argument("--hparams", help="the train block (JSON), with --writes train")
    p.add_argument("--manifest", help="the data manifest (vocab size), with --writes train")
    p.add_argument("command_line", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    p.set_defaults(func=cmd_job)

    p = sub.add_parser("bundle", help="generate the record's single train_gpt.py")
    p.add_argument("--config", required=True, help="JSON with the train, export and eval blocks")
    p.add_argument("--src", required=True, help="folder of the record modules (the workflow's workflow/record)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("size-gate", help="count code + model bytes; write size.json, or fail when over the limit")
    p.add_argument("--code", nargs="+", required=True, help="every code file the record needs")
    p.add_argument("--model", required=True, help="the compressed artifact")
    p.add_argument("--limit", type=int, help="decimal bytes (default: the challenge's 16,000,000)")
    p.add_argument("--compressor", default="")
    p.add_argument("--label", default="", help="artifact label for the log line, e.g. int6+lzma")
    p.add_argument("--code-size-convention", choices=("raw", "lzma"), default="raw",
                   help="count the code as shipped (raw) or lzma-compressed (the merged frontier's convention)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_size_gate)

    p = sub.add_parser("size", help="code + compressed model bytes of a record against the limit; exit 1 when over")
    p.add_argument("paths", nargs="+", metavar="RECORD_DIR_OR_FILE", help="a record folder, or its train_gpt.py and the artifact")
    p.add_argument("--limit", type=int, help="decimal bytes (default: the challenge's 16,000,000)")
    p.add_argument("--json", action="store_true", help="print the accounting as JSON")
    p.add_argument("--code-size-convention", choices=("raw", "lzma"), default="raw",
                   help="which total decides ok/exit status (both are printed)")
    p.set_defaults(func=cmd_size)

    p = sub.add_parser("verify-record", help="run a record's train_gpt.py alone in an empty folder; compare with the staged run")
    p.add_argument("--record", required=True, help="the record folder (train_gpt.py, submission.json, ...)")
    p.add_argument("--data", required=True, help="data manifest.json the staged run used")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size", required=True, help="the staged seed's size.json (artifact sha256 and bytes)")
    p.add_argument("--out", required=True, help="verify.json to write (only when everything matches)")
    p.add_argument("--keep-log-dir", help="copy the re-run's log here")
    p.set_defaults(func=cmd_verify_record)

    p = sub.add_parser("parse-log", help="the numbers of a training log (upstream legacy/newer families or ours); the final score is the line carrying what a submission*.json beside it claims")
    p.add_argument("log")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(func=cmd_parse_log)

    p = sub.add_parser("byo-run", help="run an existing train_gpt.py for one seed in an empty folder (bring-your-own-script mode)")
    p.add_argument("--script", required=True, help="the script; copied into the folder as train_gpt.py")
    p.add_argument("--manifest", required=True, help="the data stage's manifest.json (gives DATA_PATH, TOKENIZER_PATH)")
    p.add_argument("--settings", required=True, help="JSON: env, nproc_per_node, launcher, artifact (the byo config block)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out-dir", required=True, help="emptied, then the script's working directory")
    p.set_defaults(func=cmd_byo_run)

    p = sub.add_parser("byo-check", help="check one seed of a byo run: final score in the log, size, times")
    p.add_argument("--log", required=True)
    p.add_argument("--artifact", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--limits", required=True, help="JSON: size_limit_bytes, max_train_seconds, max_eval_seconds, enforce_time_limits")
    p.add_argument("--out", required=True, help="check.json")
    p.set_defaults(func=cmd_byo_check)

    p = sub.add_parser("validate", help="check record folders as a reviewer would; exit 1 if any has a problem")
    p.add_argument("records", nargs="+", metavar="RECORD_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON report per folder")
    p.set_defaults(func=cmd_validate)
    add_audit_bpb_parser(sub)
    return ap


def _expected_writes(args) -> int | None:
    """Bytes a data command writes, for the disk-full line (None where the command gives no estimate)."""
    from pgolf import doctor

    if args.command == "data-hub":
        return doctor.hub_download_bytes(args.train_shards)
    if args.command == "data-docs":
        return doctor.docs_data_bytes(args.docs)
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        from pgolf.jobs import disk_full_line

        where = e.filename or getattr(args, "out_dir", None) or getattr(args, "out", None) or "."
        print(f"error: {disk_full_line(where, needed=_expected_writes(args))}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
