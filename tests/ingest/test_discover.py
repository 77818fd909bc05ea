"""Export-folder discovery: samples, manifests (TOML and CSV), role rules, bad manifests,
manifest entries that find no files, files that belong to no sample, sample ids."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline import synth
from pipeline.errors import ConfigError
from pipeline.ingest.dataarray import height_dataarray, sem_dataarray
from pipeline.ingest.discover import assign_role, discover, load_manifest, load_rules

MANIFEST = """schema_version = 1
id = "m"
[[sample]]
id = "e1"
folder = "E1 export"
thickness_um = 13.71
areal_mass_mg_cm2 = 2.0
[sample.recipe]
carbon_black = 6.0
silver = 2.0
pvdf = 0.56
[sample.before]
thickness_um = 20.32
[sample.roles]
"odd-name*.tif" = "cross_section"

[[sample]]
id = "weighed-only"
files = "none"
thickness_um = 15.0
areal_mass_mg_cm2 = 2.0
"""


def sem(px_um):
    return sem_dataarray(np.zeros((8, 8), np.uint8), path="x.tif", pixel_size_um=(px_um, px_um),
                         pixel_size_source="t", vendor="t", fmt="tiff")


def test_sub_folders_manifest_and_skips(tmp_path):
    (tmp_path / "E1 export").mkdir()
    (tmp_path / "E1 export" / "psd-01.tif").write_bytes(b"x")
    (tmp_path / "E1 export" / "psd-01.tif.truth.json").write_text("{}")
    (tmp_path / "E2").mkdir()
    (tmp_path / "E2" / "height.x3p").write_bytes(b"x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.md").write_text("notes")
    (tmp_path / "samples.toml").write_text(MANIFEST)
    samples, ident = discover(tmp_path)
    by = {s.id: s for s in samples}
    assert set(by) == {"e1", "E2", "weighed-only"}
    assert [p.name for p in by["e1"].files] == ["psd-01.tif"]
    assert any("truth.json" in n for n in by["e1"].notes)
    assert by["e1"].manifest["before"]["thickness_um"] == 20.32
    assert by["weighed-only"].files == [] and by["E2"].manifest == {}
    assert ident["id"] == "m" and len(ident["sha256"]) == 64


def test_flat_folder_grouped_by_name(tmp_path):
    for name in ("A1_psd.tif", "A1_height.x3p", "B2_surface.tif", "log.txt"):
        (tmp_path / name).write_bytes(b"x")
    notes = []
    samples, ident = discover(tmp_path, notes=notes)
    by = {s.id: [p.name for p in s.files] for s in samples}
    assert by == {"A1": ["A1_height.x3p", "A1_psd.tif"], "B2": ["B2_surface.tif"]}
    assert ident is None and notes == []


def test_single_folder_takes_parent_manifest(tmp_path):
    (tmp_path / "e1").mkdir()
    (tmp_path / "e1" / "psd.tif").write_bytes(b"x")
    (tmp_path / "samples.toml").write_text(MANIFEST.replace('folder = "E1 export"\n', ""))
    samples, _ = discover(tmp_path / "e1", single=True)
    assert len(samples) == 1 and samples[0].id == "e1"
    assert samples[0].manifest["thickness_um"] == 13.71


def test_csv_manifest(tmp_path):
    (tmp_path / "samples.csv").write_text(
        "id,state,thickness_um,areal_mass_mg_cm2,recipe,before_thickness_um\n"
        "s1,after,13.7,2.0,carbon_black=6; silver=2; pvdf=0.56,20.3\n", encoding="utf-8")
    entries, ident = load_manifest(tmp_path)
    assert entries["s1"]["recipe"] == {"carbon_black": 6.0, "silver": 2.0, "pvdf": 0.56}
    assert entries["s1"]["before"] == {"thickness_um": 20.3}
    assert ident["id"] == "samples.csv"


@pytest.mark.parametrize("bad, match", [
    ('[[sample]]\nid = "a/b"\n', "without slashes"),
    ('[[sample]]\nid = "a\\\\b"\n', "without slashes"),
    ('[[sample]]\nid = ".."\n', "not '.' or '..'"),
    ('[[sample]]\nid = " "\n', "needs an id"),
    ('[[sample]]\nid = "a"\nfiles = "all"\n', 'files takes only "none"'),
    ('[[sample]]\nid = "a"\nfiles = false\n', 'files takes only "none"'),
    ('[[sample]]\nid = "a"\nfolder = "/data/a"\n', "is an absolute path"),
    ('[[sample]]\nid = "a"\nfolder = "C:\\\\data"\n', "is an absolute path"),
    ('[[sample]]\nid = "a"\nfolder = "../other-line/a"\n', "leads out of the export folder"),
    ('[[sample]]\nid = "a"\nfolder = "x/../../a"\n', "leads out of the export folder"),
    ('[[sample]]\nid = "a"\nfolder = "line/a"\n', "is nested"),
    ('[[sample]]\nid = "a"\nfolder = ""\n', "folder must name a sub-folder"),
    ('[[sample]]\nid = "a"\nthickness_um = -3\n', "thickness_um must be > 0"),
    ('[[sample]]\nid = "a"\nstate = "pressed"\n', "before' or 'after"),
    ('[[sample]]\nid = "a"\ncolour = "red"\n', "unknown keys"),
    ('[[sample]]\nid = "a"\n[[sample]]\nid = "a"\n', "listed twice"),
    ('[[sample]]\nid = "a"\npair = "zz"\n', "not in the manifest"),
    ('[[sample]]\nid = "a"\n[sample.roles]\n"*.tif" = "banana"\n', "roles maps"),
    ('[[sample]]\nid = "a"\n[sample.recipe]\nsilver = "lots"\n', "must be a number"),
])
def test_bad_manifest_is_config_error(tmp_path, bad, match):
    (tmp_path / "samples.toml").write_text("schema_version = 1\n" + bad)
    with pytest.raises(ConfigError, match=match) as ei:
        load_manifest(tmp_path)
    assert "samples.toml" in str(ei.value)


def test_manifest_newer_schema_refused(tmp_path):
    (tmp_path / "samples.toml").write_text("schema_version = 9\n")
    with pytest.raises(ConfigError, match="newer than this electrode-qc knows"):
        load_manifest(tmp_path)


def test_roles_by_name_pixel_kind_and_override():
    rules = load_rules()
    assert assign_role(sem(0.002), "anything.tif", rules) == "psd"
    assert assign_role(sem(1.0), "anything.tif", rules) == "surface"
    assert assign_role(sem(0.05), "sample_xsec_3.tif", rules) == "cross_section"
    assert assign_role(sem(0.002), "Surface-100X.TIF", rules) == "surface"  # name before pixel
    assert assign_role(sem(0.05), "anything.tif", rules) is None           # 50 nm, no name
    h = height_dataarray(np.arange(16.0).reshape(4, 4) * 1e-3, path="h.x3p", dx_um=0.1, dy_um=0.1,
                         pixel_size_source="t", vendor="t", fmt="x3p")
    assert assign_role(h, "psd-named-height.x3p", rules) == "height"
    assert assign_role(sem(0.002), "odd-name-1.tif", rules, {"odd-name*.tif": "cross_section"}) \
        == "cross_section"


def test_bad_rules_file(tmp_path):
    p = tmp_path / "d.toml"
    p.write_text('schema_version = 1\n[[rule]]\nrole = "everything"\n')
    with pytest.raises(ConfigError, match="role must be one of"):
        load_rules(p)
    p.write_text('schema_version = 1\n[grouping]\nsample_pattern = "(unclosed"\n[[rule]]\n'
                 'role = "psd"\n')
    with pytest.raises(ConfigError, match="not a valid regex"):
        load_rules(p)


def test_not_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        discover(tmp_path / "missing")


def test_real_files_get_roles(tmp_path):
    """Files written the way instruments write them get their role from what is read."""
    from pipeline.ingest.registry import read

    img, _ = synth.particle_image((128, 128), seed=1)
    p = synth.write_sem_tiff(tmp_path / "field7.tif", img, pixel_um=0.002)
    assert assign_role(read(p), p, load_rules()) == "psd"


def test_single_folder_found_through_the_parents_folder_mapping(tmp_path):
    (tmp_path / "line-42").mkdir()
    (tmp_path / "line-42" / "psd.tif").write_bytes(b"x")
    (tmp_path / "samples.csv").write_text("id,folder,thickness_um,areal_mass_mg_cm2\n"
                                          "E42,line-42,13.7,2.0\n")
    (s,), ident = discover(tmp_path / "line-42", single=True)
    assert s.id == "E42" and s.manifest["thickness_um"] == 13.7
    assert ident["id"] == "samples.csv"
    (whole,), _ = discover(tmp_path)
    assert whole.id == "E42" and [p.name for p in whole.files] == ["psd.tif"]


def test_folder_mapping_errors_and_merged_files(tmp_path):
    (tmp_path / "zdir").mkdir()
    (tmp_path / "zdir" / "xsec.tif").write_bytes(b"x")
    (tmp_path / "A_psd.tif").write_bytes(b"x")
    (tmp_path / "A_height.x3p").write_bytes(b"x")
    (tmp_path / "samples.toml").write_text('schema_version = 1\n[[sample]]\nid = "A"\n'
                                           'folder = "zdir"\n')
    (a,), _ = discover(tmp_path)
    assert [p.name for p in a.files] == ["A_height.x3p", "A_psd.tif", "xsec.tif"]
    (tmp_path / "samples.toml").write_text('schema_version = 1\n[[sample]]\nid = "A"\n'
                                           'folder = "typo"\n')
    with pytest.raises(ConfigError, match="'typo' is not a sub-folder"):
        discover(tmp_path)
    (tmp_path / "samples.toml").write_text(
        'schema_version = 1\n[[sample]]\nid = "A"\nfolder = "zdir"\n'
        '[[sample]]\nid = "B"\nfolder = "zdir"\n')
    with pytest.raises(ConfigError, match="both name folder 'zdir'"):
        discover(tmp_path)


# -- manifest entries that find no files -------------------------------------------------
def toml_manifest(folder, *entries):
    (folder / "samples.toml").write_text(
        "schema_version = 1\n" + "".join(f"[[sample]]\n{e}\n" for e in entries))


def test_manifest_typo_is_an_error_naming_the_closest_folder(tmp_path):
    """A typo made a phantom electrode (judged on its gravimetric porosity alone) and left
    the real one without its thickness and mass."""
    (tmp_path / "embodiment-1").mkdir()
    (tmp_path / "embodiment-1" / "psd.tif").write_bytes(b"x")
    (tmp_path / "comparative-1").mkdir()
    (tmp_path / "comparative-1" / "psd.tif").write_bytes(b"x")
    toml_manifest(tmp_path, 'id = "embodiment1"\nthickness_um = 13.7',
                  'id = "comparative-1"\nthickness_um = 15.7')
    with pytest.raises(ConfigError, match=r"sample 'embodiment1' in samples.toml matches no "
                                          r"folder and no files; did you mean 'embodiment-1'\?"
                       ) as ei:
        discover(tmp_path)
    assert ei.value.exit_code == 2 and 'files = "none"' in str(ei.value)
    assert "comparative-1" not in str(ei.value)  # the entry that finds its folder is fine


def test_manifest_typo_suggests_a_file_prefix_whatever_its_case(tmp_path):
    for name in ("E1_psd.tif", "E1_height.x3p", "E2_psd.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "samples.csv").write_text("id,thickness_um\ne1,13.7\nE2,15.0\n")
    with pytest.raises(ConfigError, match=r"sample 'e1' in samples.csv matches no folder and "
                                          r"no files; did you mean 'E1'\?"):
        discover(tmp_path)


def test_every_entry_without_files_is_named_once(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "notes.txt").write_text("operator notes")  # skipped: not an image
    toml_manifest(tmp_path, 'id = "A"', 'id = "zzz-unrelated"')
    with pytest.raises(ConfigError) as ei:
        discover(tmp_path)
    msg = str(ei.value)
    assert "sample 'A' in samples.toml finds no image files in its folder 'A'" in msg
    assert "sample 'zzz-unrelated' in samples.toml matches no folder and no files;" in msg
    assert "did you mean" not in msg  # nothing is close to 'zzz-unrelated'


def test_files_none_is_a_weighed_only_sample_on_purpose(tmp_path):
    (tmp_path / "E1").mkdir()
    (tmp_path / "E1" / "psd.tif").write_bytes(b"x")
    (tmp_path / "samples.csv").write_text("id,files,thickness_um,areal_mass_mg_cm2\n"
                                          "E1,,13.7,2.0\nweighed,none,15.0,2.0\n")
    samples, _ = discover(tmp_path)
    by = {s.id: s for s in samples}
    assert by["weighed"].files == [] and by["weighed"].manifest["files"] == "none"
    assert [p.name for p in by["E1"].files] == ["psd.tif"] and "files" not in by["E1"].manifest
    (tmp_path / "samples.csv").write_text("id,files\nE1,some\n")
    with pytest.raises(ConfigError, match='sample \'E1\': files takes only "none"'):
        discover(tmp_path)


def test_files_none_with_files_found_is_an_error(tmp_path):
    (tmp_path / "E1").mkdir()
    (tmp_path / "E1" / "psd.tif").write_bytes(b"x")
    toml_manifest(tmp_path, 'id = "E1"\nfiles = "none"')
    with pytest.raises(ConfigError, match=r"sample 'E1' in samples.toml says files = \"none\", "
                                          r"but finds files \(psd.tif\)"):
        discover(tmp_path)
    with pytest.raises(ConfigError, match="says files"):
        discover(tmp_path / "E1", single=True)


def test_single_folder_whose_entry_finds_no_files(tmp_path):
    (tmp_path / "line-42").mkdir()
    (tmp_path / "line-42" / "operator.txt").write_text("pressed at 500 MPa")
    (tmp_path / "samples.csv").write_text("id,folder,thickness_um\nE42,line-42,13.7\n"
                                          "other,,15.0\n")
    with pytest.raises(ConfigError, match=r"sample 'E42' in samples.csv is meant for folder "
                                          r"'line-42', which holds no image files"):
        discover(tmp_path / "line-42", single=True)
    (tmp_path / "samples.csv").write_text("id,folder,files,thickness_um,areal_mass_mg_cm2\n"
                                          "E42,line-42,none,13.7,2.0\nother,,,15.0,2.0\n")
    (s,), _ = discover(tmp_path / "line-42", single=True)  # 'other' is not this folder's
    assert s.id == "E42" and s.files == [] and s.manifest["thickness_um"] == 13.7


def test_single_folder_without_an_entry_stays_a_sample_with_a_note(tmp_path):
    (tmp_path / "e9").mkdir()
    (tmp_path / "e9" / "operator.txt").write_text("nothing yet")
    (s,), ident = discover(tmp_path / "e9", single=True)
    assert s.id == "e9" and s.files == [] and ident is None
    assert s.notes == ["skipped operator.txt: not an image (discovery skip rule)",
                       "no image files"]


def test_own_manifest_entry_with_folder_dot_in_single_mode(tmp_path):
    (tmp_path / "psd.tif").write_bytes(b"x")
    toml_manifest(tmp_path, 'id = "other"\nfiles = "none"', 'id = "E7"\nfolder = "."')
    (s,), _ = discover(tmp_path, single=True)
    assert s.id == "E7" and [p.name for p in s.files] == ["psd.tif"]


# -- files at the top that belong to no sample -------------------------------------------
def loose_export(folder):
    folder.mkdir()
    for name in ("b.tif", "a.tif", "A1_psd.tif", "README.md"):
        (folder / name).write_bytes(b"x")
    (folder / "E2").mkdir()
    (folder / "E2" / "height.x3p").write_bytes(b"x")
    return folder


def test_loose_files_are_named_in_a_note_and_not_measured(tmp_path):
    folder = loose_export(tmp_path / "line-7")
    notes = []
    samples, _ = discover(folder, notes=notes)
    assert {s.id: [p.name for p in s.files] for s in samples} == {
        "A1": ["A1_psd.tif"], "E2": ["height.x3p"]}
    assert notes == [("not attributed to a sample: a.tif, b.tif; name them <sample>_psd..., "
                     "put them in a sub-folder per electrode, or run with --single-sample")]


def test_folder_notes_are_logged_as_warnings_when_nobody_collects_them(tmp_path, caplog):
    folder = loose_export(tmp_path / "line-7")
    caplog.set_level(logging.INFO, logger="pipeline.ingest.discover")
    collected, _ = discover(folder, notes=[])
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "not attributed" in r.message]
    assert said == [(logging.INFO, (f"{folder}: not attributed to a sample: a.tif, b.tif; name "
                                   f"them <sample>_psd..., put them in a sub-folder per "
                                   f"electrode, or run with --single-sample"))]
    caplog.clear()
    assert discover(folder)[0] == collected  # without `notes`, the same samples
    assert [r.levelno for r in caplog.records if "not attributed" in r.message] == [
        logging.WARNING]


def test_many_loose_files_are_counted_not_all_listed(tmp_path):
    for i in range(13):
        (tmp_path / f"field{i:02d}.tif").write_bytes(b"x")
    notes = []
    assert discover(tmp_path, notes=notes)[0] == []
    assert notes[0].startswith("not attributed to a sample: field00.tif, field01.tif,")
    assert "field09.tif and 3 more;" in notes[0] and "field10" not in notes[0]


def test_single_sample_takes_the_loose_files(tmp_path):
    folder = loose_export(tmp_path / "line-7")
    notes = []
    (s,), _ = discover(folder, single=True, notes=notes)
    assert s.id == "line-7" and notes == []
    assert [p.relative_to(folder).as_posix() for p in s.files] == [
        "A1_psd.tif", "E2/height.x3p", "a.tif", "b.tif"]


@pytest.mark.parametrize("entry", ['id = "E7"\nfolder = "."', 'id = "line-7"'])
def test_a_manifest_entry_makes_the_folder_one_electrode(tmp_path, entry):
    folder = loose_export(tmp_path / "line-7")
    toml_manifest(folder, entry + "\nthickness_um = 13.7")
    notes = []
    samples, _ = discover(folder, notes=notes)
    by = {s.id: [p.name for p in s.files] for s in samples}
    sid = entry.split('"')[1]
    assert by == {sid: ["a.tif", "b.tif"], "A1": ["A1_psd.tif"], "E2": ["height.x3p"]}
    assert notes == []


def test_an_entry_for_a_sub_folder_of_the_same_name_does_not_take_the_loose_files(tmp_path):
    folder = loose_export(tmp_path / "line-7")
    (folder / "line-7").mkdir()
    (folder / "line-7" / "psd.tif").write_bytes(b"x")
    toml_manifest(folder, 'id = "line-7"\nfolder = "line-7"')
    notes = []
    samples, _ = discover(folder, notes=notes)
    assert [p.name for p in {s.id: s for s in samples}["line-7"].files] == ["psd.tif"]
    assert notes[0].startswith("not attributed to a sample: a.tif, b.tif;")


# -- sample ids -------------------------------------------------------------------------
@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200f", "\x1b", "\x7f", "\x85",
                                  "\x00", "\t"])
def test_control_characters_in_manifest_ids_are_refused(tmp_path, char):
    code = f"U+{ord(char):04X}"
    (tmp_path / "samples.toml").write_text(
        f'schema_version = 1\n[[sample]]\nid = "x\\u{ord(char):04x}yz"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_manifest(tmp_path)
    msg = str(ei.value)
    assert f"sample id {'x' + char + 'yz'!r} contains the control character {code}; rename " \
           f"the manifest entry" in msg
    assert char not in msg  # shown escaped: the message reads as the id is stored


def test_control_characters_in_folder_and_file_names_are_refused(tmp_path):
    (tmp_path / "E1\u202eyz").mkdir()
    (tmp_path / "E1\u202eyz" / "psd.tif").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"sample id 'E1\\u202eyz' contains the control "
                                          r"character U\+202E; rename the folder") as ei:
        discover(tmp_path)
    assert "\u202e" not in str(ei.value)
    (tmp_path / "E1\u202eyz").rename(tmp_path / "E1")
    (tmp_path / "E2\x1b_psd.tif").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"sample id 'E2\\x1b' contains the control "
                                          r"character U\+001B; rename the files"):
        discover(tmp_path)


def test_control_characters_in_the_single_folder_name_are_refused(tmp_path):
    (tmp_path / "E\u2067").mkdir()
    (tmp_path / "E\u2067" / "psd.tif").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"U\+2067; rename the folder"):
        discover(tmp_path / "E\u2067", single=True)


def test_a_control_character_in_a_file_name_but_not_in_its_id_is_fine(tmp_path):
    (tmp_path / "E1").mkdir()
    (tmp_path / "E1" / "psd\u202e.tif").write_bytes(b"x")
    (s,), _ = discover(tmp_path)
    assert s.id == "E1" and len(s.files) == 1


def test_ids_too_long_for_output_file_names_are_refused(tmp_path):
    from pipeline.ingest.discover import MAX_ID_BYTES

    assert MAX_ID_BYTES == 200
    ok, long = "é" * 100, "é" * 100 + "x"  # 200 and 201 bytes in UTF-8
    (tmp_path / ok).mkdir()
    (tmp_path / ok / "psd.tif").write_bytes(b"x")
    assert [s.id for s in discover(tmp_path)[0]] == [ok]
    (tmp_path / f"{long}_psd.tif").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"sample id 'é{40}'\.\.\. is 201 bytes long in "
                                          r"UTF-8, more than the 200 that output file names "
                                          r"allow; rename the files") as ei:
        discover(tmp_path)
    assert long not in str(ei.value)
    (tmp_path / "samples.toml").write_text(f'schema_version = 1\n[[sample]]\nid = "{"a" * 201}"\n')
    with pytest.raises(ConfigError, match=r"'a{40}'\.\.\. is 201 bytes long .* rename the "
                                          r"manifest entry"):
        load_manifest(tmp_path)


def test_an_empty_folder_with_a_bad_name_is_no_sample_and_no_error(tmp_path):
    (tmp_path / "x\u202e").mkdir()
    (tmp_path / "E1").mkdir()
    (tmp_path / "E1" / "psd.tif").write_bytes(b"x")
    assert [s.id for s in discover(tmp_path)[0]] == ["E1"]
