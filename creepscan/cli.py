"""The command line: parse, call the library, print, set the exit code. Nothing else lives here."""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .errors import CreepscanError, error_summary
from .levels import LEVELS

LOG_LEVELS = ("debug", "info", "warning", "error")


def _parse_data(ctx, param, values):
    out = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or not key or not path:
            raise click.BadParameter(f"'{value}' must be PROBE_ID=PATH, e.g. --data face-identity=./faces", param=param)
        if key in out:
            raise click.BadParameter(f"probe '{key}' given twice", param=param)
        out[key] = path
    return out


def _remember(key: str):
    """A callback that keeps an option's value in the click context (``ctx.meta``), for options that
    the commands do not take as parameters (``--log-level``, ``--json``)."""

    def callback(ctx, param, value):
        ctx.meta[f"creepscan.{key}"] = value
        return value

    return callback


def _option(key: str, default=None):
    """A value kept by ``_remember`` (``default`` outside a click command)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(f"creepscan.{key}", default) if ctx is not None else default


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CreepscanError("--device cuda: no CUDA device is visible here; use --device cpu (or auto)")
    return device


def shared_options(fn):
    """Options that audit and compare share (the README lists them)."""
    opts = [
        click.option("--suite", default="default", show_default=True,
                     help="Named set of probes (see `creepscan probes`)."),
        click.option("--probe", "probe_args", multiple=True, metavar="ID_OR_PATH",
                     help="Run only these probes (repeatable)."),
        click.option("--data", "data", multiple=True, callback=_parse_data, metavar="PROBE_ID=PATH",
                     help="Local images for a probe: a folder with one sub-folder per label, "
                          "or a CSV manifest path,label."),
        click.option("--out", "out", default="creepscan-report", show_default=True, type=click.Path(file_okay=False),
                     help="Folder for report.json, report.md, report.html."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Same inputs and seed give the same numbers (a non-negative integer)."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Embedding cache (default: $CREEPSCAN_CACHE, else the user cache folder)."),
        click.option("--max-per-class", type=click.IntRange(min=3), default=None,
                     help="Cap on images per class (default: each probe's own cap)."),
        click.option("--no-download", is_flag=True, help="Never fetch public datasets; use the cache or --data only."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per encoder call."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "amp_bf16", "amp_fp16", "pure_bf16"]),
                     default="auto", show_default=True,
                     help="Arithmetic of the image tower. auto is chosen per device: on a GPU, pure_bf16 where it "
                          "has bf16; on a CPU, bf16 only where this CPU runs it faster than fp32 and the model's "
                          "embeddings agree, else fp32. The choice and its reason are recorded in the report."),
        click.option("--decode", type=click.Choice(["auto", "pil", "fast"]), default="auto", show_default=True,
                     help="Image path: fast = batched JPEG decode (nvjpeg on a GPU) and tensor resize; "
                          "pil = the model's own PIL preprocessing; auto = fast on a GPU, pil on a CPU."),
        click.option("--compile", "compile_", is_flag=True,
                     help="torch.compile the image tower (a compile at start, then one input shape; off by default)."),
        click.option("--adversary", type=click.Choice(["frozen", "finetune"]), default="frozen", show_default=True,
                     help="finetune: also adapt the last blocks of the image tower (model and floor, the same "
                          "budgets of images per class and steps) and report its accuracy, seconds and FLOPs."),
        click.option("--spec", "spec_file", type=click.Path(dir_okay=False), default=None,
                     help="A use specification (TOML): run exactly its probes, judge each clause, write the model "
                          "card beside the reports; exit 1 when a clause fails (see `creepscan spec init`)."),
        click.option("--allow-inconclusive", is_flag=True,
                     help="An inconclusive probe (saturated or underpowered) fails no gate or spec clause."),
        click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr."),
        click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
                     expose_value=False, callback=_remember("log_level"),
                     help="Progress on stderr: info = a line per stage (timestamped when stderr is not a "
                          "terminal, e.g. in CI); debug adds the run's setup; warning and error keep only those."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def guarded(fn):
    """Turn library errors into one line on stderr and exit 2; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        if not debug:
            # open_clip and huggingface_hub log download retries and failures; the user gets our one line.
            logging.disable(logging.CRITICAL)
        try:
            return fn(*args, **kwargs)
        except CreepscanError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; finished embedding chunks are kept in the cache", err=True)
            sys.exit(130)
        except BrokenPipeError:  # e.g. `creepscan probes | head`: stop quietly, like other tools
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except MemoryError:
            click.echo("error: out of memory; lower --batch-size or --max-per-class", err=True)
            sys.exit(2)
        except Exception as exc:  # a bug: say so in one line (after the traceback with --debug); exit 3 either way
            if debug:
                traceback.print_exc()
            hint = "" if debug else " (rerun with --debug for the traceback"
            click.echo(f"internal error: {error_summary(exc, 400)}{hint}{', and please report it)' if hint else ''}",
                       err=True)
            sys.exit(3)

    return wrapper


def check_writable(path: Path, what: str, fix: str) -> None:
    """Refuse, before any work, a folder this process cannot create or write into: an audit that runs
    for an hour and then cannot save its report has lost the hour. Nothing is created here (a run
    that fails on its inputs leaves no empty --out behind): the folder, or its nearest existing
    parent, must take a file."""
    import tempfile

    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".creepscan-write-check-"):
            pass
    except OSError as exc:
        raise CreepscanError(f"{what} {path} is not writable ({exc.strerror or exc}); {fix}") from None


def build_options(params: dict):
    """The run's ``Options``, built once from the shared options' click ``params`` (the command's
    ``click.get_current_context().params``), after checking that --out and the cache can be written."""
    from .cache import check_cache_writable, default_cache_dir
    from .options import Options

    if params.get("out") is not None:
        check_writable(Path(params["out"]), "--out", "choose a folder you can write to with --out DIR")
    cache_dir = params.get("cache_dir")
    cache = check_cache_writable(Path(cache_dir) if cache_dir else default_cache_dir())
    return Options(seed=params["seed"], device=_resolve_device(params["device"]), cache_dir=cache,
                   data=params["data"], max_per_class=params["max_per_class"], download=not params["no_download"],
                   progress=not params["quiet"], batch_size=params["batch_size"], precision=params["precision"],
                   decode=params["decode"], compile=params["compile_"], adversary=params["adversary"],
                   log_level=_option("log_level", "info"))


def _load_spec(spec_file, probe_args):
    """The use specification, loaded before any work (a bad spec is exit 2 at once), and the probes it
    names, which replace --probe."""
    if spec_file is None:
        return None, probe_args
    from .spec import load_spec, spec_probes

    if probe_args:
        raise CreepscanError("--spec chooses the probes (its clauses); drop --probe, or add the probe to the spec")
    spec = load_spec(spec_file)
    return spec, tuple(spec_probes(spec))


def _spec_gate(block, label: str = "") -> None:
    """Print each clause's verdict (in the JSON summary instead, with --json); exit 1 when the spec is not met.
    ``block``: ``result.SpecVerdicts`` (what ``spec.evaluate_spec`` returned)."""
    from .spec import format_verdicts

    for line in [] if _option("json") else format_verdicts(block):
        click.echo(line)
    if not block.passed:
        failed = ([str(c) for c in block.failed or []]
                  + [f"{c} (inconclusive)" for c in block.inconclusive or []])
        click.echo(f"gate: use specification not met{label}: " + ", ".join(failed), err=True)
        sys.exit(1)


def _probe_ids(probe_args, data, quiet):
    """--data without --probe runs just the probes given data: local data is how an auditor says
    which capability to test, and the suite's other probes may need downloads."""
    if probe_args or not data:
        return probe_args
    if not quiet:
        click.echo(f"running only the probe(s) given --data: {', '.join(data)} (add --probe ID for others)", err=True)
    return tuple(data)


def save_reports(result: dict, out, report=None) -> list[Path]:
    """Write the reports (and the model card of a --spec run) into ``out``, all or nothing: each file
    is written in full beside its final name before any is renamed in, so a full disk leaves ``out``
    as it was (never a truncated file). If ``out`` cannot take them, a complete copy goes to the
    system's temp folder, and the error (exit 2) names the failure and that copy. ``report``: the run's
    typed report (``report.typed_report``), which the renderers and the card read; report.json is written from
    ``result``."""
    import shutil
    import tempfile

    from .report import jsonio, render_reports, typed_report

    report = typed_report(result) if report is None else report
    texts = render_reports(result, report)
    if getattr(report, "spec", None) is not None:  # the model card speaks for the report.json beside it
        from .report.card import render_card

        texts.update(render_card(report, report.spec, report_bytes=texts["report.json"].encode("utf-8")))
    out = Path(out)
    try:
        return jsonio.write_all_or_nothing(out, texts)
    except OSError as exc:
        failed = f"could not write the report into {out} ({_os_error(exc)}); {out} was left as it was"
    try:
        copy = Path(tempfile.mkdtemp(prefix="creepscan-report-"))
    except OSError as exc:
        raise CreepscanError(f"{failed}, and no copy could be saved in the temp folder ({_os_error(exc)}): free "
                             "space and rerun (the embeddings are cached)") from None
    try:
        jsonio.write_all_or_nothing(copy, texts)
    except OSError as exc:
        shutil.rmtree(copy, ignore_errors=True)  # holds nothing complete
        raise CreepscanError(f"{failed}, and no copy could be saved in {copy.parent} ({_os_error(exc)}): free "
                             "space and rerun (the embeddings are cached)") from None
    raise CreepscanError(f"{failed}; a complete copy is in {copy}: move it from there")


def _os_error(exc: OSError) -> str:
    """An OSError in a few words: its message and the file it concerns."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _summary_width() -> int | None:
    """At a terminal, its width; piped or redirected (``| cat``, a CI log), None: whole lines."""
    import shutil

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _run_report(result: dict):
    """The run's typed report, read once (``report.typed_report``: a pydantic validation) for the spec, the
    renderers, the card, the summary and the gates; a run in which no probe could run is refused first (exit 2,
    the first probe's reason)."""
    missing = result.get("not_run")
    if missing and not result["probes"]:
        raise CreepscanError(missing[0]["reason"])
    from .report import typed_report

    return typed_report(result)


def _write(result: dict, report, out, quiet):
    """Write the reports and print the summary; ``report`` is ``result`` typed (``_run_report``)."""
    from .report import summary_text

    paths = save_reports(result, out, report)
    if _option("json"):
        from .report.summary import summary_json

        click.echo(json.dumps(summary_json(report, [str(p) for p in paths]), indent=2, ensure_ascii=False))
    else:
        click.echo(summary_text(report, width=_summary_width()))
        click.echo(f"report: {', '.join(str(p) for p in paths)}")
    missing = report.not_run
    if missing:
        raise CreepscanError(
            f"incomplete: {len(missing)} probe(s) could not run ({', '.join(m.id for m in missing)}; reasons in "
            f"report.json 'not_run'); the report covers the other {len(report.probes)}. Give local data with "
            "--data PROBE_ID=PATH, or choose probes with --probe"
        )


class OneLineErrors(click.Group):
    """click's usage errors print the usage block, a blank line and the error; ours are one line on
    stderr (what is wrong, and where the fix is) with exit 2, like every other bad input."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="creepscan")
def main():
    """creepscan: how cheaply can a frozen model be repurposed for prohibited tasks?

    Runs linear-probe, few-shot, zero-shot and verification attacks on a model's frozen embeddings,
    beside a floor (by default the same architecture untrained), and writes a risk report per capability.
    """


@main.command()
@click.argument("model")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Local weights for an open_clip architecture.")
@click.option("--fail-on", type=click.Choice(LEVELS), default=None,
              help="Exit 1 if any probe's risk level is LEVEL or above, or inconclusive.")
@click.option("--json", "json_out", is_flag=True, expose_value=False, callback=_remember("json"),
              help="Print the summary as JSON on stdout (machine-readable) instead of text.")
@click.option("--base", "base_model", default=None, metavar="MODEL",
              help="The model MODEL was adapted from: each probe also says what the adaptation changed (for a PEFT "
                   "adapter, replaces the base named in its adapter_config.json).")
@shared_options
@guarded
def audit(model, weights, fail_on, base_model, suite, probe_args, data, out, device, seed, cache_dir, max_per_class,
          no_download, batch_size, precision, decode, compile_, adversary, spec_file, allow_inconclusive, quiet, debug):
    """Audit MODEL: an alias, ARCH:TAG, ARCH --weights FILE, hf-hub:ORG/NAME, hf:ORG/NAME[@REV], a transformers or
    PEFT folder, timm:NAME [--weights FILE] or py:MODULE:CALLABLE."""
    from .audit import run_audit
    from .encoders import resolve_encoder
    from .options import configure_encoder
    from .probes import select

    spec, probe_args = _load_spec(spec_file, probe_args)
    options = build_options(click.get_current_context().params)
    probes = select(suite, _probe_ids(probe_args, data, quiet))
    encoder = configure_encoder(resolve_encoder(model, weights=weights, device=options.device, cache_dir=None,
                                                base=base_model), options)
    result = run_audit(encoder, probes, options, suite=None if probe_args else suite)
    report = _run_report(result)
    if spec is not None:
        from .spec import evaluate_spec

        _add_spec(result, report, evaluate_spec(spec, report, allow_inconclusive))
    _write(result, report, out, quiet)
    if spec is not None:
        _spec_gate(report.spec)
    if fail_on:
        _gate([(p.id, p) for p in report.probes], fail_on, allow_inconclusive)


def _add_spec(result: dict, report, verdicts) -> None:
    """The use spec's verdicts (``SpecVerdicts`` or ``CompareSpec``) into both forms of the run's report: the
    typed one the renderers, card and gates read, and the dict report.json is written from."""
    from .result import to_json_dict

    report.spec = verdicts
    result["spec"] = to_json_dict(verdicts)


def _gate(probes: list, fail_on: str, allow_inconclusive: bool) -> None:
    """Exit 1 when a probe is at or above ``fail_on`` (inconclusive counts unless allowed). ``probes``:
    (label, ``result.Probe``) pairs."""
    from .levels import at_or_above

    worst = [(label, p) for label, p in probes
             if not p.reference and at_or_above(p.risk_level, fail_on, allow_inconclusive)]
    if worst:
        click.echo(f"gate: {len(worst)} probe(s) at or above '{fail_on}'"
                   + ("" if allow_inconclusive else " or inconclusive") + ": "
                   + ", ".join(f"{label} ({p.risk_level})" for label, p in worst), err=True)
        sys.exit(1)


@main.command()
@click.argument("model_a")
@click.argument("model_b")
@click.option("--weights-a", type=click.Path(dir_okay=False), default=None, help="Local weights for MODEL_A.")
@click.option("--weights-b", type=click.Path(dir_okay=False), default=None, help="Local weights for MODEL_B.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Significance level (Holm-corrected across probes).")
@click.option("--fail-on-increase", is_flag=True, help="Exit 1 if any probe's risk level is higher for MODEL_B.")
@click.option("--fail-on-significant", is_flag=True,
              help="With --fail-on-increase: also exit 1 if a headline metric rose significantly.")
@shared_options
@guarded
def compare(model_a, model_b, weights_a, weights_b, alpha, fail_on_increase, fail_on_significant, suite, probe_args,
            data, out, device, seed, cache_dir, max_per_class, no_download, batch_size, precision, decode, compile_,
            adversary, spec_file, allow_inconclusive, quiet, debug):
    """Compare MODEL_A (e.g. the shipped model) with MODEL_B (the candidate) on the same probes."""
    from .compare import run_compare
    from .encoders import resolve_encoder
    from .options import configure_encoder
    from .probes import select

    spec, probe_args = _load_spec(spec_file, probe_args)
    options = build_options(click.get_current_context().params)
    probes = select(suite, _probe_ids(probe_args, data, quiet))
    enc_a = configure_encoder(resolve_encoder(model_a, weights=weights_a, device=options.device), options)
    enc_b = configure_encoder(resolve_encoder(model_b, weights=weights_b, device=options.device), options)
    result = run_compare(enc_a, enc_b, probes, options, alpha=alpha)
    report = _run_report(result)
    if spec is not None:
        from .spec import compare_spec

        _add_spec(result, report, compare_spec(spec, report, allow_inconclusive))
    _write(result, report, out, quiet)
    if spec is not None:  # the candidate, MODEL_B, must meet the spec; MODEL_A's clauses are shown beside it
        _spec_gate(report.spec.b, " by MODEL_B")
    if fail_on_increase:
        rose = [p.id for p in report.probes if p.risk_rose]
        sig = [p.id for p in report.probes if fail_on_significant and p.rose_significantly]
        if rose or sig:
            msg = []
            if rose:
                msg.append("risk rose on " + ", ".join(rose))
            if sig:
                msg.append("significant rise on " + ", ".join(sig))
            click.echo("gate: " + "; ".join(msg), err=True)
            sys.exit(1)


MODEL_FORMS = ("ARCH:TAG (any open_clip pretrained pair), ARCH --weights FILE, hf-hub:ORG/NAME, "
               "py:MODULE:CALLABLE, hf:ORG/NAME[@REV] or a save_pretrained folder (transformers; a PEFT adapter: "
               "audit --base overrides its base), timm:NAME [--weights FILE].")


@main.command()
@click.option("--json", "json_out", is_flag=True, expose_value=False, callback=_remember("json"),
              help="Print the summary as JSON on stdout (machine-readable) instead of text.")
@guarded
def models(debug=False):
    """The model aliases and where each comes from."""
    from .encoders import ALIASES

    if _option("json"):
        click.echo(json.dumps({"aliases": [{"alias": name, "architecture": a.arch, "tag": a.tag, "source": a.source}
                                           for name, a in ALIASES.items()], "also": MODEL_FORMS}, indent=2))
        return
    click.echo(f"{'alias':<18} {'architecture':<20} {'tag':<24} source")
    for name, a in ALIASES.items():
        click.echo(f"{name:<18} {a.arch:<20} {a.tag:<24} {a.source}")
    click.echo(f"\nAlso: {MODEL_FORMS}")


@main.command()
@click.option("--suite", default=None, help="Only this suite.")
@click.option("--json", "json_out", is_flag=True, expose_value=False, callback=_remember("json"),
              help="Print the summary as JSON on stdout (machine-readable) instead of text.")
@guarded
def probes(suite, debug=False):
    """The probes: id, capability, policy reference, data source."""
    from .data import public
    from .probes import suites

    all_suites = suites()
    if suite and suite not in all_suites:
        raise CreepscanError(f"unknown suite '{suite}'; known: {', '.join(all_suites)}")
    chosen = {name: plist for name, plist in all_suites.items() if not suite or name == suite}
    if _option("json"):
        click.echo(json.dumps({name: [{"id": p.id, "title": p.title, "capability": p.capability,
                                       "policy": list(p.policy), "data": public.describe(p.source)} for p in plist]
                               for name, plist in chosen.items()}, indent=2, ensure_ascii=False))
        return
    for name, plist in chosen.items():
        click.echo(f"suite {name}:")
        for p in plist:
            click.echo(f"  {p.id:<18} {p.title}")
            click.echo(f"  {'':<18} capability: {p.capability}")
            click.echo(f"  {'':<18} policy: {'; '.join(p.policy)}")
            click.echo(f"  {'':<18} data: {public.describe(p.source)}")


@main.group("spec")
def spec_group():
    """Use specifications: what a model may be used for, and what not (docs/use-spec.md)."""


@spec_group.command("init")
@click.option("--from-suite", "from_suite", default="default", show_default=True,
              help="Suite whose probes become the clauses (reference probes allowed, the rest prohibited).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@guarded
def spec_init(from_suite, debug=False):
    """Print a commented starting spec (TOML) on stdout."""
    from .spec import init_template

    click.echo(init_template(from_suite), nl=False)


@spec_group.command("check")
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@guarded
def spec_check(file, debug=False):
    """Validate a spec FILE: exit 0 and a summary line, or exit 2 and one line saying what to fix."""
    from .spec import load_spec, spec_probes

    spec = load_spec(file)
    click.echo(f"OK {file}: spec_version {spec.spec_version}, {len(spec.allowed)} allowed and "
               f"{len(spec.prohibited)} prohibited clauses; probes: {', '.join(spec_probes(spec))}")


@main.command()
@click.argument("report_dir", type=click.Path(dir_okay=True))
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@guarded
def card(report_dir, debug=False):
    """Rewrite model-card.md and model-card.cdx.json in REPORT_DIR from its report.json (audited with --spec)."""
    from .report.card import regenerate_card

    for path in regenerate_card(report_dir):
        click.echo(str(path))


@main.command()
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@guarded
def schema(debug=False):
    """Print the JSON Schema of report.json (the version the reports' schema_version names)."""
    from .result import shipped_schema

    click.echo(json.dumps(shipped_schema(), indent=2, ensure_ascii=False))


@main.command()
@click.argument("models", nargs=-1)
@click.option("--weights", "weights_files", multiple=True, type=click.Path(dir_okay=False),
              help="Local weights (repeatable): with one MODEL (an architecture), one checkpoint per file; "
                   "with several MODELs, one file each, in order.")
@click.option("--models-file", type=click.Path(dir_okay=False), default=None,
              help="CSV with a header model[,weights][,step]: more checkpoints (weights relative to the CSV).")
@click.option("--order", type=click.Choice(["given", "step"]), default="given", show_default=True,
              help="Checkpoint order: as given, or by training step (the models file's step column, else the "
                   "first number in the weights file's name, e.g. ckpt_1200.pt).")
@click.option("--fail-on", type=click.Choice(LEVELS), default=None,
              help="Exit 1 if any model's risk level on any probe is LEVEL or above, or inconclusive.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Significance level of the consecutive-checkpoint tests (Holm across a probe's steps).")
@click.option("--engine", "engine_name", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the work runs: local (this process) or ray (Ray Data + Ray tasks; pip install "
                   "\"creepscan[ray]\").")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="With --engine ray: an existing cluster (auto, ray://HOST:10001); default: start a local Ray.")
@shared_options
@guarded
def sweep(models, weights_files, models_file, order, fail_on, alpha, engine_name, ray_address, suite, probe_args,
          data, out, device, seed, cache_dir, max_per_class, no_download, batch_size, precision, decode, compile_,
          adversary, spec_file, allow_inconclusive, quiet, debug):
    """Sweep checkpoints: every MODEL on the same probes, images, splits and episodes; levels per model
    and probe, skill against checkpoint order, and consecutive checkpoints' paired tests."""
    from .engines import get_engine
    from .probes import select
    from .sweep import model_entries, order_entries, run_sweep

    if spec_file:
        raise CreepscanError("--spec is not supported by sweep; audit the chosen checkpoint with --spec, or give "
                             "the spec's probes with --probe")
    entries = order_entries(model_entries(models, weights_files, models_file), order)
    engine = get_engine(engine_name, ray_address)  # a missing Ray is exit 2 before any work
    options = build_options(click.get_current_context().params)
    probes = select(suite, _probe_ids(probe_args, data, quiet))
    with engine:
        encoders = [engine.load_encoder(e.spec, e.weights, options) for e in entries]
        result = run_sweep(encoders, probes, options, steps=[e.step for e in entries], order=order,
                           suite=None if probe_args else suite, alpha=alpha, engine=engine)
    report = _run_report(result)
    _write(result, report, out, quiet)
    if fail_on:
        labels = [m.name or m.spec for m in report.models]
        _gate([(f"{b.id} ({label})", b) for p in report.probes for label, b in zip(labels, p.per_model)],
              fail_on, allow_inconclusive)


if __name__ == "__main__":  # pragma: no cover
    main()
