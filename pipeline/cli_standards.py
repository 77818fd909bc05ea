"""`electrode-qc calibrate ...`: measure calibration standards and write instrument profiles."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli_common import emit_json as _emit_json
from pipeline.cli_common import guard as _guard
from pipeline.errors import EXIT_OK

calibrate_app = typer.Typer(help="Measure calibration standards and write instrument profiles.",
                            no_args_is_help=True)


def _show(res: dict, json_out: bool) -> None:
    if json_out:
        _emit_json(res)
    else:
        for k, v in res.items():
            typer.echo(f"{k:24s} {v}")


def _match_of(da, vendor: str | None, model: str | None, serial: str | None) -> dict[str, str]:
    """Which images the profile applies to: the options, else what the file says."""
    match = {
        "vendor": vendor or str(da.attrs.get("vendor") or ""),
        "model": model or str(da.attrs.get("instrument") or ""),
        "serial": serial or "",
    }
    return {k: v for k, v in match.items() if v}


_VENDOR = typer.Option(None, "--vendor", help="Profile match: vendor (default: the file's).")
_MODEL = typer.Option(None, "--model", help="Profile match: model (default: the file's).")
_SERIAL = typer.Option(None, "--serial", help="Profile match: serial number.")


@calibrate_app.command("grating")
def calibrate_grating(
    image: Path = typer.Argument(..., help="An SEM image (or height map) of a periodic grating."),
    pitch_nm: float = typer.Option(..., "--pitch-nm", help="Certified grating pitch, nm."),
    out: Path | None = typer.Option(None, "--out", help="Write an instrument profile here."),
    profile_id: str | None = typer.Option(None, "--id", help="Profile id (default: file stem)."),
    square_pixels: bool = typer.Option(False, "--square-pixels", help="Use one axis for both."),
    vendor: str | None = _VENDOR,
    model: str | None = _MODEL,
    serial: str | None = _SERIAL,
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """Pixel size from an image of a grating of known pitch (FFT peak, both axes)."""

    def body() -> int:
        from pipeline.ingest.registry import read
        from pipeline.metrology.standards import grating_pixel_size, write_profile

        da = read(image)
        res = grating_pixel_size(da.values, pitch_nm, pixel_size_um=da.attrs.get("pixel_size_um"))
        if out is not None:
            res["profile"] = str(write_profile(
                out, profile_id=profile_id or out.stem, match=_match_of(da, vendor, model, serial),
                grating=res,
                square_pixels=square_pixels,
            ))
        _show(res, json_out)
        return EXIT_OK

    _guard(body)


@calibrate_app.command("step")
def calibrate_step(
    height_map: Path = typer.Argument(..., help="A height map of a step-height standard."),
    height_um: float = typer.Option(..., "--height-um", help="Certified step height, um."),
    out: Path | None = typer.Option(None, "--out", help="Write an instrument profile here."),
    profile_id: str | None = typer.Option(None, "--id", help="Profile id (default: file stem)."),
    vendor: str | None = _VENDOR,
    model: str | None = _MODEL,
    serial: str | None = _SERIAL,
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
):
    """Measure a step-height standard and derive the z-scale (certified / measured)."""

    def body() -> int:
        from pipeline.ingest.registry import read
        from pipeline.metrology.standards import step_height, write_profile

        da = read(height_map, kind="height")
        res = step_height(da.values, certified_um=height_um)
        if out is not None:
            res["profile"] = str(write_profile(
                out, profile_id=profile_id or out.stem, match=_match_of(da, vendor, model, serial),
                step=res,
            ))
        _show(res, json_out)
        return EXIT_OK

    _guard(body)
