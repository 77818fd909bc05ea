"""Export-folder discovery: samples, manifests (TOML and CSV), role rules, bad manifests."""

from __future__ import annotations

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
    for name in ("A1_psd.tif", "A1_height.x3p", "B2_surface.tif", "loose.tif", "log.txt"):
        (tmp_path / name).write_bytes(b"x")
    samples, ident = discover(tmp_path)
    by = {s.id: [p.name for p in s.files] for s in samples}
    assert by == {"A1": ["A1_height.x3p", "A1_psd.tif"], "B2": ["B2_surface.tif"],
                  tmp_path.name: ["loose.tif"]}
    assert ident is None


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
    ('[[sample]]\nid = "a"\nthickness_um = -3\n', "finite positive"),
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
    h = height_dataarray(np.zeros((4, 4)), path="h.x3p", dx_um=0.1, dy_um=0.1,
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
