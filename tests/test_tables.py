"""The run's tables: what a spreadsheet would run as a formula is written as text, numbers
as numbers, Parquet as it is; and every file is written safely (pipeline.fsutil)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from pipeline.fsutil import OutputError
from pipeline.report.tables import csv_safe, write_outputs, write_particle_table
from tests.helpers import enospc, no_temporaries
from tests.report.report_data import results_for, sample_result

CMD = "=cmd|' /C calc'!A0"
SUM = "@SUM(1+1)"


def read_csv(path) -> list[dict[str, str]]:
    """Cells exactly as a spreadsheet receives them (no type guessing)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _sample(sample_id: str, **kw) -> dict:
    s = sample_result(sample_id, **kw)
    for im in s["images"]:  # as the records give it: per axis
        if not isinstance(im["pixel_size_um"], dict):
            im["pixel_size_um"] = {"x": im["pixel_size_um"], "y": im["pixel_size_um"]}
    return s


def hostile_results() -> dict:
    s = _sample(CMD, porosity=-0.02, sa_um=0.05)
    s["images"][0].update(path=SUM, status="error", error="+1 bad magic", reader="-x",
                          results={"note": "\tTAB", "n_particles": -3})
    s["images"][1].update(path="\r=1+1", error=None)
    s["spec"]["properties"]["porosity"]["source"] = "-gravimetric"
    return results_for([s, _sample("plain-1")])


def test_csv_cells_that_spreadsheets_evaluate_are_written_as_text(tmp_path):
    results = hostile_results()
    n = len(results["samples"][0]["images"])
    write_outputs(tmp_path, results, {}, html=False)
    images = read_csv(tmp_path / "tables" / "images.csv")
    # every row whole (a carriage return inside a value does not split its row)
    assert [r["sample_id"] for r in images] == ["'" + CMD] * n + ["plain-1"] * n
    assert [r["path"] for r in images[:2]] == ["'" + SUM, "'\r=1+1"]
    assert images[0]["error"] == "'+1 bad magic" and images[0]["reader"] == "'-x"
    assert images[0]["note"] == "'\tTAB"
    assert float(images[0]["n_particles"]) == -3 and images[0]["n_particles"].startswith("-")
    assert images[n]["path"] == "plain-1/psd-01.tif"  # ordinary text as it is

    samples = read_csv(tmp_path / "tables" / "samples.csv")
    assert samples[0]["sample_id"] == "'" + CMD and samples[1]["sample_id"] == "plain-1"
    assert samples[0]["porosity_source"] == "'-gravimetric"
    # numbers stay numbers: a negative value is not quoted
    assert float(samples[0]["porosity_frac"]) == pytest.approx(-0.02)
    assert samples[0]["porosity_frac"].startswith("-")

    # Parquet and results.json keep the values as they are
    pq = pd.read_parquet(tmp_path / "tables" / "images.parquet")
    assert pq["sample_id"].tolist()[:2] == [CMD, CMD] and pq["path"].tolist()[0] == SUM
    assert pq["note"].tolist()[0] == "\tTAB"
    sq = pd.read_parquet(tmp_path / "tables" / "samples.parquet")
    assert sq["sample_id"].tolist() == [CMD, "plain-1"]
    assert sq["porosity_frac"].tolist()[0] == pytest.approx(-0.02)
    assert CMD in (tmp_path / "results.json").read_text(encoding="utf-8")


def test_particle_csv_cells_are_written_as_text_numbers_as_numbers(tmp_path):
    df = pd.DataFrame({"ecd_nm": [41.5, -1.0], "label": [1, 2],
                       "phase": pd.Categorical(["carbon", "=HYPERLINK(\"http://x\")"]),
                       "path": [SUM, "plain.tif"], "note": pd.array(["-2+3", None],
                                                                     dtype="string")})
    ref = write_particle_table(df, tmp_path, "S1-0123456789ab")
    rows = read_csv(tmp_path / "tables" / "particles-csv" / "S1-0123456789ab.csv")
    assert [r["ecd_nm"] for r in rows] == ["41.5", "-1"]
    assert [r["phase"] for r in rows] == ["carbon", "'=HYPERLINK(\"http://x\")"]
    assert [r["path"] for r in rows] == ["'" + SUM, "plain.tif"]
    assert rows[0]["note"] == "'-2+3"
    back = pd.read_parquet(tmp_path / ref["path"])
    assert back["path"].tolist() == [SUM, "plain.tif"] and back["note"].tolist()[0] == "-2+3"
    assert back["phase"].astype(str).tolist()[1] == "=HYPERLINK(\"http://x\")"
    assert back["ecd_nm"].tolist() == [41.5, -1.0] and ref["rows"] == 2


def test_csv_safe_leaves_numbers_and_the_input_alone():
    df = pd.DataFrame({"x": [-1.5, 2.0], "n": np.array([-1, 3]), "ok": [True, None],
                       "t": ["=1", None], "mixed": [-4, "-4"]})
    safe = csv_safe(df)
    assert df["t"].tolist()[0] == "=1"  # not changed in place
    assert safe["t"].tolist()[0] == "'=1" and pd.isna(safe["t"].tolist()[1])
    assert safe["mixed"].tolist() == [-4, "'-4"]
    assert safe["x"].tolist() == [-1.5, 2.0] and safe["n"].dtype == df["n"].dtype
    assert safe["ok"].tolist() == [True, None]
    plain = pd.DataFrame({"a": ["x", "y"], "b": [1, 2]})
    assert csv_safe(plain) is plain  # nothing to change: no copy
    assert list(io.StringIO(csv_safe(df).to_csv(index=False)))[1].startswith("-1.5,-1,True,'=1")


# ---- written safely ----------------------------------------------------------------------
def _plant_links(out, victim) -> list:
    """Links at every temporary name the writers used to use."""
    names = [out / ".results.json.tmp", out / "report.html.tmp",
             out / "tables" / ".images.csv.tmp", out / "tables" / ".images.parquet.tmp",
             out / "tables" / ".samples.csv.tmp", out / "tables" / ".samples.parquet.tmp",
             out / "tables" / "particles" / ".S1-0123456789ab.parquet.tmp",
             out / "tables" / "particles-csv" / ".S1-0123456789ab.csv.tmp"]
    for n in names:
        n.parent.mkdir(parents=True, exist_ok=True)
        n.symlink_to(victim)
    return names


def test_links_planted_at_the_old_temporary_names_do_not_redirect_the_writes(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    links = _plant_links(out, victim)
    write_outputs(out, results_for([_sample("S1")]), {}, html=False)
    write_particle_table(pd.DataFrame({"ecd_nm": [40.0]}), out, "S1-0123456789ab")
    assert victim.read_text() == "precious"
    assert all(n.is_symlink() for n in links)
    for f in ("results.json", "tables/images.csv", "tables/samples.parquet",
              "tables/particles/S1-0123456789ab.parquet",
              "tables/particles-csv/S1-0123456789ab.csv"):
        assert (out / f).is_file() and not (out / f).is_symlink(), f
    assert pd.read_parquet(out / "tables" / "samples.parquet")["sample_id"].tolist() == ["S1"]


def test_a_failed_table_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    enospc(monkeypatch)
    with pytest.raises(OutputError) as exc:
        write_outputs(out, results_for([_sample("S1")]), {}, html=False)
    assert str(exc.value) == f"{out / 'results.json'}: cannot write: No space left on device"
    with pytest.raises(OutputError, match=r"particles/S1-0123456789ab.parquet: cannot write: "
                                          r"No space left on device"):
        write_particle_table(pd.DataFrame({"ecd_nm": [40.0]}), out, "S1-0123456789ab")
    assert no_temporaries(out) == [] and not (out / "results.json").exists()


def test_a_full_disk_stops_the_tables_with_an_output_error(full_disk):
    with pytest.raises(OutputError, match=r"cannot write: No space left on device") as exc:
        write_particle_table(pd.DataFrame({"ecd_nm": np.arange(50_000.0)}), full_disk,
                             "S1-0123456789ab")
    assert "S1-0123456789ab" in str(exc.value) and exc.value.exit_code == 2
    with pytest.raises(OutputError, match=r"results.json: cannot write: No space left"):
        write_outputs(full_disk, results_for([_sample("S1")] * 400), {}, html=False)
    assert no_temporaries(full_disk) == []
