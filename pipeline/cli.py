"""The command line: parse, call the library, map the outcome to an exit code. No science here.

Machine output (``--json``) goes to stdout; messages and errors go to stderr. Each command
imports the layers it runs when it runs, so that `--help` and the commands that only look
start in a fraction of a second.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from pipeline.cli_common import emit_json as _emit_json
from pipeline.cli_common import err as _err
from pipeline.cli_common import error_text as _error_text
from pipeline.cli_common import guard as _guard
from pipeline.cli_standards import calibrate_app
from pipeline.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    ConfigError,
    ElectrodeQCError,
)

app = typer.Typer(
    name="electrode-qc",
    help="Measure battery-electrode micrographs and height maps; decide claim 15.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("pipeline")


def _each_file(files: list[Path], measure: Callable[[Path], dict[str, Any]]):
    """Run `measure` on every file; one file's failure is reported and the rest go on.

    Returns the per-file results (``{"path", ...}`` or ``{"path", "error"}``) and the
    worst exit code. Usage errors (a bad option or recipe) stop the whole command.
    """
    results, worst = [], EXIT_OK
    for f in files:
        try:
            results.append({"path": str(f), **measure(f)})
        except ElectrodeQCError as exc:
            if exc.exit_code == EXIT_USAGE:
                raise
            _err(f"error: {_error_text(exc)}")
            results.append({"path": str(f), "error": _error_text(exc)})
            worst = max(worst, exc.exit_code)
        except MemoryError:
            _err(f"error: {f}: out of memory while measuring it")
            results.append({"path": str(f), "error": "out of memory while measuring it"})
            worst = max(worst, EXIT_UNREADABLE)
        except Exception as exc:  # one file's failure must not lose the others' results
            log.debug("internal error on %s", f, exc_info=True)
            _err(f"internal error: {f}: {type(exc).__name__}: {exc}")
            results.append({"path": str(f), "error": f"internal error: {type(exc).__name__}: {exc}"})
            worst = EXIT_INTERNAL
    return results, worst


def _reader(kind: str | None = None, *, as_xarray: bool = True) -> Callable[[Path], Any]:
    """Read a file and apply its matching instrument profile; profiles are loaded once.
    `as_xarray` False: a Raster where no profile applies (no xarray import: `inspect`)."""
    from pipeline.ingest.registry import read
    from pipeline.instruments import calibrate_image, load_profiles

    profiles = load_profiles()
    return lambda f: calibrate_image(read(f, kind=kind, as_xarray=as_xarray),
                                     profiles=profiles)


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
    calibration: Path | None = typer.Option(
        None, "--calibration", file_okay=False,
        help="Site calibration folder (instrument profiles, specs, recipes, discovery rules, "
             "materials), consulted file by file before the defaults shipped with the package "
             "(also: ELECTRODE_QC_CALIBRATION)."),
) -> None:
    if calibration is not None:  # for this process and the workers it starts
        import os

        from pipeline.config_files import SITE_ENV

        os.environ[SITE_ENV] = str(calibration.expanduser().resolve())
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    from pipeline.batch.execute import keep_freed_memory

    keep_freed_memory()  # this process is ours: it measures samples when run in process


@app.command()
def formats(json_out: bool = typer.Option(False, "--json", help="Machine output on stdout.")):
    """List the file formats that can be read."""

    def body() -> int:
        from pipeline.ingest.registry import readers

        rows = [
            {
                "name": r.name,
                "kind": r.kind,
                "suffixes": list(r.suffixes),
                "description": r.description,
                "available": bool(getattr(r, "available", True)),
            }
            for r in readers()
        ]
        if json_out:
            _emit_json(rows)
        else:
            from pipeline.report_text import formats_table

            typer.echo(formats_table(rows))
        return EXIT_OK

    _guard(body)


@app.command()
def inspect(
    file: Path = typer.Argument(..., help="An instrument file."),
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """Show what the reader sees: format, shape, pixel size and its source, invalid points."""

    def body() -> int:
        from pipeline.report_text import inspect_record, inspect_text

        da = _reader(as_xarray=False)(file)
        rec = inspect_record(da)
        if json_out:
            _emit_json(rec)
        else:
            typer.echo(inspect_text(rec))
        return EXIT_OK

    _guard(body)


@app.command()
def surface(
    files: list[Path] = typer.Argument(..., help="Height-map files."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe TOML (default: calibration/recipes/default.toml)."),
    level: str | None = typer.Option(None, "--level", help="none | plane | poly:N (default: the recipe's)."),
    lambda_s: float | None = typer.Option(None, "--lambda-s", help="S-filter nesting index, um."),
    lambda_c: float | None = typer.Option(None, "--lambda-c", help="L-filter nesting index, um."),
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """ISO 25178 surface texture (Sa, Sz, ...) of height maps, one result per file."""

    def body() -> int:
        from pipeline.metrology.recipe import load_recipe
        from pipeline.metrology.texture import surface_texture
        from pipeline.report_text import surface_text

        rec = load_recipe(recipe)
        read_height = _reader("height")

        def measure(f: Path) -> dict[str, Any]:
            da = read_height(f)
            return surface_texture(da, level=level, lambda_s=lambda_s, lambda_c=lambda_c, recipe=rec)

        results, worst = _each_file(files, measure)
        if json_out:
            _emit_json(results)
        else:
            typer.echo(surface_text(results))
        return worst

    _guard(body)


@app.command()
def protrusions(
    files: list[Path] = typer.Argument(..., help="SEM surface images (about 100x)."),
    bump_diameter_um: float | None = typer.Option(
        None, "--bump-diameter-um", help="Expected protrusion diameter (default: estimated)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """Count surface protrusions on SEM images: count and density per mm2."""

    def body() -> int:
        from pipeline.segmentation.protrusions import find_protrusions

        read_sem = _reader("sem")

        def measure(f: Path) -> dict[str, Any]:
            table = find_protrusions(read_sem(f),
                                     bump_diameter_um=bump_diameter_um)
            a = table.attrs
            return {"count": a.get("count"), "per_mm2": a.get("per_mm2"), "h": a.get("h")}

        results, worst = _each_file(files, measure)
        if json_out:
            _emit_json(results)
        else:
            for r in results:  # a file that failed is reported once, on stderr
                if "error" not in r:
                    typer.echo(f"{r['path']}: {r['count']} protrusions, "
                               f"{r['per_mm2']:.4g} per mm2")
        return worst

    _guard(body)


@app.command()
def particles(
    files: list[Path] = typer.Argument(..., help="High-magnification SEM images."),
    min_diameter_nm: float | None = typer.Option(
        None, "--min-diameter-nm", help="Smallest particle expected (resolution gate)."
    ),
    table: Path | None = typer.Option(None, "--table", help="Write the particle table (.parquet or .csv)."),
    method: str = typer.Option("learned", "--method",
                               help="How particles are found: 'learned' (a network trained on "
                                    "synthetic SEM images; the default), 'classic' (threshold "
                                    "and shape) or 'seams' (shape and the dark seams between "
                                    "particles)."),
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """Particles and their size distribution (number/volume quantiles, mixture modes)."""
    from pipeline.segmentation.particles import METHODS

    if method not in METHODS:
        raise typer.BadParameter(f"'{method}' is not one of {', '.join(METHODS)}",
                                 param_hint="--method")

    def body() -> int:
        from pipeline.segmentation.particles import find_particles
        from pipeline.segmentation.psd import size_distribution

        read_sem = _reader("sem")

        tables = []

        def measure(f: Path) -> dict[str, Any]:
            parts = find_particles(read_sem(f),
                                   min_diameter_nm=min_diameter_nm, method=method)
            dist = size_distribution(parts)
            tables.append(parts.assign(path=str(f)))
            out = {k: dist.get(k) for k in (
                "n", "x10_nm", "x50_nm", "x90_nm", "modes", "bic_k", "share_ge_100nm",
                "merge_suspect_share", "ag_area_frac", "primary_size", "flags")}
            out["method"] = method
            if "model" in parts.attrs:
                out["model"] = parts.attrs["model"]
                out["network_scale"] = parts.attrs["network_scale"]
            return out

        results, worst = _each_file(files, measure)
        if table is not None and tables:
            import pandas as pd

            t = pd.concat(tables, ignore_index=True)
            t.attrs = {}
            if table.suffix == ".csv":
                t.to_csv(table, index=False)
            else:
                t.to_parquet(table, index=False)
        if json_out:
            _emit_json(results)
        else:
            for r in results:
                if "error" in r:  # reported once, on stderr
                    continue
                modes = ", ".join(f"{m['mean_nm']:.1f} nm ({m['number_share']:.0%})" for m in r["modes"] or [])
                typer.echo(f"{r['path']}: n {r['n']}, x50 {r['x50_nm']:.1f} nm, modes {modes}, BIC k {r['bic_k']}")
        return worst

    _guard(body)


@app.command()
def porosity(
    file: Path = typer.Argument(..., help="An SEM cross-section of the layer on its collector."),
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """Porosity and thickness of the layer in a cross-section image, with their U (k=2)."""

    def body() -> int:
        from pipeline.segmentation.cross_section import porosity_from_cross_section

        res = porosity_from_cross_section(_reader("sem")(file))
        if json_out:
            _emit_json({"path": str(file), **res})
        else:
            lo, hi = res["band"]
            typer.echo(f"{file}: porosity {res['porosity_frac']:.3f} +/- "
                       f"{res['U_porosity_frac']:.3f} (k=2; threshold band {lo:.3f}-{hi:.3f})")
            if res.get("thickness_um") is not None:
                typer.echo(f"  layer thickness {res['thickness_um']:.3g} +/- "
                           f"{res['U_thickness_um']:.2g} um (k=2), collector at the "
                           f"{res['collector_side']}")
            for flag in res.get("flags", []):
                typer.echo(f"  flag: {flag}")
        return EXIT_OK

    _guard(body)


app.add_typer(calibrate_app, name="calibrate")


def _verdict_line(s: dict[str, Any]) -> str:
    from pipeline.conformity import spec_name

    props = s["spec"]["properties"]

    def fmt(name: str) -> str:
        p = props.get(name) or {}
        v = p.get("value")
        if v is None:
            return f"{name} n/a"
        shown = f"{100 * v:.1f} %" if name == "porosity" else f"{v:.3g} um"
        return f"{name} {shown} {'ok' if p.get('met') else 'no'}"

    met = {True: "met", False: "not met", None: "undecided"}[s["spec"]["met"]]
    gate = s["gate"]["outcome"]
    if gate == "conforming" and s["gate"].get("combine") == "any":
        gate = "conforming (any one property)"
    failed = sum(im.get("status") == "error" for im in s.get("images") or [])
    return (f"{s['sample_id']}: {spec_name((s['spec'].get('spec') or {}).get('id'))} {met} ({', '.join(fmt(n) for n in props)}); "
            f"gate {gate}" + (f"; {failed} file(s) failed" if failed else ""))


RUN_HELP = """Measure every electrode in FOLDER, decide claim 15 and the gate, write the report.

\b
Exit codes:
  0  every file measured (with --strict: every electrode conforming)
  1  with --strict: an electrode is non-conforming at the production gate
  2  usage or configuration error, or an output that cannot be written
  3  indeterminate: missing calibration, a measurement that found nothing or
     refused the image (with --strict: an electrode is indeterminate)
  4  unreadable input, or a file too large for the memory limit
  70 internal error

With --strict the verdict decides, as for `gate`: 1 if an electrode is non-conforming, \
else 4 or 70 if a file failed (its electrode is indeterminate), else 3 if an electrode is \
indeterminate, else 0.
"""


def _dask_security(ca: Path | None, cert: Path | None, key: Path | None) -> dict | None:
    if ca is None and cert is None and key is None:
        return None
    if ca is None or cert is None or key is None:
        raise ConfigError(None, "a tls:// scheduler needs --tls-ca-file, --tls-cert and "
                                "--tls-key together")
    return {"tls_ca_file": str(ca), "tls_client_cert": str(cert), "tls_client_key": str(key),
            "require_encryption": True}


@app.command(help=RUN_HELP)
def run(
    folder: Path = typer.Argument(..., help="An export folder: one sub-folder (or name prefix) per electrode."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (results.json, tables/, report.html)."),
    spec: Path | None = typer.Option(None, "--spec", help="Claim spec TOML (default: calibration/specs/claim15.toml)."),
    gate_spec: Path | None = typer.Option(None, "--gate-spec", help="Production gate spec (default: gate-production.toml)."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe TOML (default: calibration/recipes/default.toml)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with the verdict: 1 if an electrode is non-conforming, 3 if one is indeterminate."),
    single_sample: bool = typer.Option(False, "--single-sample", help="FOLDER is one electrode: files at its top with no sample prefix are its files."),
    no_html: bool = typer.Option(False, "--no-html", help="Skip report.html."),
    pictures: str = typer.Option("auto", "--pictures", help="Pictures in report.html: all, attention (samples not conforming or with a failed file), none; auto: all up to 20 samples, else attention."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Samples measured in parallel processes (default: the CPUs available)."),
    max_memory: str | None = typer.Option(None, "--max-memory", help="Memory one measurement may use, e.g. 4G (default: 75 % of the machine's memory divided by --jobs); larger files are refused (exit 4)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="A dask scheduler address, or 'auto' for a local cluster. tcp:// trusts the scheduler (dask sends pickled tasks); across machines use tls:// with the --tls options."),
    tls_ca_file: Path | None = typer.Option(None, "--tls-ca-file", help="CA certificate for a tls:// scheduler."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Client certificate for a tls:// scheduler."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Client private key for a tls:// scheduler."),
    db: str | None = typer.Option(None, "--db", help="Results store URL (default: sqlite at OUT/results.db)."),
    force: bool = typer.Option(False, "--force", help="Measure again samples already in the store."),
    json_out: bool = typer.Option(False, "--json", help="Print results.json on stdout."),
):
    def body() -> int:
        from pipeline.batch.measure import parse_memory
        from pipeline.batch.runner import run as run_folder

        res = run_folder(folder, out, spec=spec, gate_spec=gate_spec, recipe=recipe,
                         strict=strict, report=not no_html, jobs=jobs, scheduler=scheduler,
                         db=db, force=force, pictures=pictures, single=single_sample,
                         max_memory=None if max_memory is None else parse_memory(max_memory),
                         security=_dask_security(tls_ca_file, tls_cert, tls_key))
        if json_out:
            _emit_json(res.results)
        else:
            for s in res.samples:
                typer.echo(_verdict_line(s))
        for note in res.results.get("notes") or []:
            _err(f"note: {note}")
        _err(f"wrote {out / 'results.json'}" + ("" if no_html else f" and {out / 'report.html'}"))
        return res.exit_code

    _guard(body)


@app.command()
def report(
    db: str | None = typer.Option(None, "--db", help="Results store URL (default: sqlite at OUT/results.db)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for report.html, results.json and tables."),
    spec: Path | None = typer.Option(None, "--spec", help="Claim spec TOML for the trend charts' limits."),
):
    """Rebuild the report and tables from the results store alone, with trend charts."""

    def body() -> int:
        from pipeline.batch.runner import report_from_store

        res = report_from_store(db, out, spec=spec)
        typer.echo(f"{len(res.samples)} samples from the store; wrote {out / 'report.html'}", err=True)
        return EXIT_OK

    _guard(body)


@app.command()
def watch(
    folder: Path = typer.Argument(..., help="An instrument export folder (one sub-folder per electrode)."),
    db: str | None = typer.Option(None, "--db", help="Results store URL (default: sqlite at OUT/results.db)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where particle tables (and the default store) go; outside FOLDER."),
    poll: bool = typer.Option(False, "--poll", help="Poll instead of file-system events (network shares)."),
    stable_seconds: float = typer.Option(2.0, "--stable-seconds", help="A file is ready once its size and mtime hold this long."),
    scan_interval: float = typer.Option(60.0, "--scan-interval", help="Seconds between reconciliation scans."),
):
    """Measure new exports as they arrive, into the results store, until SIGTERM."""

    def body() -> int:
        from pipeline.batch.watch import watch as watch_folder

        return watch_folder(folder, db_url=db, out=out, poll=poll, stable_seconds=stable_seconds,
                            scan_interval_s=scan_interval,
                            on_stored=lambda rec: _err(_verdict_line(rec)))

    _guard(body)


@app.command()
def gate(
    sample: Path = typer.Argument(..., help="One electrode's folder."),
    spec: Path | None = typer.Option(None, "--spec", help="Gate spec TOML (default: calibration/specs/gate-production.toml)."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe TOML."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write results.json, tables and report.html here."),
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """One electrode through the production gate. Exit 0 conforming, 1 non-conforming,
    3 indeterminate, 4 unreadable input, 2 usage, 70 internal error."""

    def body() -> int:
        from pipeline.batch.runner import gate as gate_sample

        res = gate_sample(sample, spec=spec, recipe=recipe, out=out)
        s = res.samples[0]
        if json_out:
            _emit_json({"sample_id": s["sample_id"], "exit_code": res.exit_code, "gate": s["gate"],
                        "spec": s["spec"], "flags": s["flags"]})
        else:
            typer.echo(f"{s['sample_id']}: {s['gate']['outcome']} ({s['gate']['decision_rule']})")
            for r in s["gate"]["reasons"]:
                typer.echo(f"  {r}")
        return res.exit_code

    _guard(body)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
