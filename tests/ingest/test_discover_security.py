"""Export-folder discovery with untrusted folders: symbolic links out of the folder, link
loops, files reached twice, special files, excluded output folders, manifests and manifest
folders that lead out of the export folder."""

from __future__ import annotations

import os

import pytest

from pipeline.errors import ConfigError
from pipeline.ingest.discover import discover, load_manifest

SECRET = b"operator password: hunter2"


def tree(root, *files):
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"image")
    return root


def link(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def rel_files(samples, root):
    return {s.id: [p.relative_to(root).as_posix() for p in s.files] for s in samples}


@pytest.fixture
def outside(tmp_path):
    """A folder beside the export folder, with a file nobody should read through it."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    (d / "secret.tif").write_bytes(SECRET)
    (d / "E9_psd.tif").write_bytes(SECRET)
    return d


def test_file_links_out_of_the_folder_are_skipped_and_named(tmp_path, outside):
    export = tree(tmp_path / "export", "E1/psd.tif")
    link(export / "E1" / "stolen_psd.tif", outside / "secret.tif")
    link(export / "E2_psd.tif", outside / "secret.tif")
    link(export / "E3_psd.tif", "../elsewhere/E9_psd.tif")  # relative, same verdict
    notes = []
    samples, _ = discover(export, notes=notes)
    assert rel_files(samples, export) == {"E1": ["E1/psd.tif"]}
    assert notes == [
        ("skipped link E1/stolen_psd.tif: it leads out of the export folder, and discovery "
        "reads only inside it"),
        ("skipped link E2_psd.tif: it leads out of the export folder, and discovery reads "
        "only inside it"),
        ("skipped link E3_psd.tif: it leads out of the export folder, and discovery reads "
        "only inside it")]
    assert not any("elsewhere" in n or "secret" in n or "hunter2" in n for n in notes)


def test_folder_links_out_of_the_folder_are_skipped_at_any_depth(tmp_path, outside):
    export = tree(tmp_path / "export", "E1/psd.tif", "E1/deeper/more/surface.tif")
    link(export / "E3", outside)
    link(export / "E1" / "deeper" / "more" / "up", outside)
    link(export / "E1" / "parent", "..")  # the export folder itself: a loop, see below
    link(export / "E1" / "grandparent", "../..")  # out of the export folder
    notes = []
    samples, _ = discover(export, notes=notes)
    assert rel_files(samples, export) == {
        "E1": ["E1/deeper/more/surface.tif", "E1/psd.tif"]}
    assert "skipped link E3: it leads out of the export folder, and discovery reads only " \
           "inside it" in notes
    assert any(n.startswith("skipped link E1/deeper/more/up: it leads out") for n in notes)
    assert any(n.startswith("skipped link E1/grandparent: it leads out") for n in notes)


def test_a_single_electrode_folder_does_not_follow_links_out_either(tmp_path, outside):
    e1 = tree(tmp_path / "export" / "E1", "psd.tif")
    link(e1 / "extra_psd.tif", outside / "secret.tif")
    link(e1 / "fields", outside)
    notes = []
    (s,), _ = discover(e1, single=True, notes=notes)
    assert [p.name for p in s.files] == ["psd.tif"]
    assert [n.split(":")[0] for n in notes] == ["skipped link extra_psd.tif",
                                                "skipped link fields"]


def test_link_loops_end_with_a_note_and_no_file_twice(tmp_path):
    export = tree(tmp_path / "export", "E1/psd.tif", "E1/sub/xsec.tif", "E2/height.x3p")
    link(export / "E1" / "sub" / "back", "..")       # to a folder that holds it
    link(export / "E1" / "here", ".")                 # to itself
    link(export / "again", ".")                       # the export folder, from its top
    link(export / "E2" / "ping.tif", "pong.tif")      # a -> b -> a
    link(export / "E2" / "pong.tif", "ping.tif")
    notes = []
    samples, _ = discover(export, notes=notes)
    assert rel_files(samples, export) == {
        "E1": ["E1/psd.tif", "E1/sub/xsec.tif"], "E2": ["E2/height.x3p"]}
    assert sorted(notes) == [
        "skipped link E1/here: a symlink loop (it leads back to a folder that holds it)",
        "skipped link E1/sub/back: a symlink loop (it leads back to a folder that holds it)",
        "skipped link E2/ping.tif: a symlink loop",
        "skipped link E2/pong.tif: a symlink loop",
        "skipped link again: a symlink loop (it leads back to a folder that holds it)"]


def test_two_folders_linking_to_each_other_end(tmp_path):
    export = tree(tmp_path / "export", "A/a.tif", "B/b.tif")
    link(export / "A" / "to-b", "../B")
    link(export / "B" / "to-a", "../A")
    notes = []
    samples, _ = discover(export, notes=notes)
    assert rel_files(samples, export) == {"A": ["A/a.tif"], "B": ["B/b.tif"]}
    assert "skipped A/to-b/b.tif: the same file as B/b.tif, reached through a link" in notes
    assert any(n.startswith("skipped link A/to-b/to-a: a symlink loop") for n in notes)
    assert "skipped link B/to-a: it leads to a folder read already" in notes


def test_links_inside_the_folder_are_followed_once(tmp_path):
    export = tree(tmp_path / "export", "E1/psd.tif", ".archive/E3/surface.tif",
                  ".archive/e4.tif")
    link(export / "E1" / "psd-again.tif", "psd.tif")  # the same file twice: its own path wins
    link(export / "E3", ".archive/E3")                 # a sample folder kept elsewhere inside
    link(export / "E4_psd.tif", ".archive/e4.tif")     # named by its link
    link(export / "E5", "E1")                          # a folder read already
    notes = []
    samples, _ = discover(export, notes=notes)
    assert rel_files(samples, export) == {
        "E1": ["E1/psd.tif"], "E3": ["E3/surface.tif"], "E4": ["E4_psd.tif"]}
    assert notes == [
        "skipped link E5: it leads to a folder read already",
        "skipped E1/psd-again.tif: the same file as E1/psd.tif, reached through a link"]


def test_an_export_folder_named_through_a_link_is_read_inside_its_target(tmp_path, outside):
    export = tree(tmp_path / "export", "E1/psd.tif", "E2/height.x3p")
    link(export / "E1" / "height.x3p", "../E2/height.x3p")
    link(export / "E1" / "x_psd.tif", outside / "secret.tif")
    link(tmp_path / "today", "export")
    notes = []
    samples, _ = discover(tmp_path / "today", notes=notes)
    assert rel_files(samples, tmp_path / "today") == {"E1": ["E1/psd.tif"],
                                                      "E2": ["E2/height.x3p"]}
    assert [n.split(":")[0] for n in notes] == ["skipped link E1/x_psd.tif",
                                                "skipped E1/height.x3p"]


def test_broken_links_and_special_files_are_named_not_opened(tmp_path):
    export = tree(tmp_path / "export", "E1/psd.tif")
    link(export / "E1" / "gone.tif", "moved-away.tif")
    os.mkfifo(export / "E1" / "pipe.tif")  # opening it would wait for a writer forever
    notes = []
    (s,), _ = discover(export, notes=notes)
    assert [p.name for p in s.files] == ["psd.tif"]
    assert notes == ["skipped link E1/gone.tif: it leads to nothing",
                     "skipped E1/pipe.tif: not a regular file or folder"]


def test_trees_deeper_than_an_export_stop_with_a_note(tmp_path):
    from pipeline.ingest.discover import MAX_DEPTH

    export = tree(tmp_path / "export", "E1/psd.tif", "E1/a/b/xsec.tif")
    deep = export / "E1" / "/".join(["d"] * (MAX_DEPTH + 8))
    tree(deep, "height.x3p")
    tree(export / "E2" / "/".join(["d"] * (MAX_DEPTH - 1)), "psd.tif")  # deep, but an export
    notes = []
    samples, _ = discover(export, notes=notes)
    files = rel_files(samples, export)
    assert files["E1"] == ["E1/a/b/xsec.tif", "E1/psd.tif"] and len(files["E2"]) == 1
    assert notes == [(f"skipped E1/{'/'.join(['d'] * MAX_DEPTH)}: more than {MAX_DEPTH} "
                     f"folders deep")]


def test_names_in_notes_are_shown_escaped(tmp_path, outside):
    export = tree(tmp_path / "export", "E1/psd.tif")
    link(export / "E1" / "x\u202egpj.tif", outside / "secret.tif")
    notes = []
    discover(export, notes=notes)
    assert notes[0].startswith("skipped link 'E1/x\\u202egpj.tif': it leads out")
    assert "\u202e" not in notes[0]


# -- excluded paths (the run's own output folder) ------------------------------------------
def with_outputs(export):
    tree(export, "E1/psd.tif", "out/tables/E1-0123456789ab.parquet", "out/report.html",
         "out/previews/E1_psd.png")
    (export / "out" / "results.json").write_text("{}")
    return export


def test_an_output_folder_inside_the_export_folder_is_not_read(tmp_path):
    export = with_outputs(tmp_path / "export")
    notes = []
    samples, _ = discover(export, exclude=[export / "out"], notes=notes)
    assert rel_files(samples, export) == {"E1": ["E1/psd.tif"]}
    assert notes == [("skipped out: excluded from discovery (an output folder is not read as "
                     "input)")]
    assert "out" in {s.id for s in discover(export)[0]}  # what it guards against


def test_excluded_paths_are_compared_resolved(tmp_path):
    export = with_outputs(tmp_path / "export")
    link(tmp_path / "alias", "export")
    for given in (tmp_path / "alias" / "out", str(export / "E1" / ".." / "out")):
        samples, _ = discover(export, exclude=[given])
        assert [s.id for s in samples] == ["E1"]
    link(export / "results-link", "out")  # a link into an excluded folder is excluded too
    notes = []
    samples, _ = discover(export, exclude=[export / "out"], notes=notes)
    assert [s.id for s in samples] == ["E1"]
    assert [n.split(":")[0] for n in notes] == ["skipped out", "skipped results-link"]


def test_exclude_outside_or_of_the_folder_itself_changes_nothing(tmp_path):
    export = tree(tmp_path / "export", "E1/psd.tif", "E2/psd.tif")
    for ex in ([tmp_path / "elsewhere"], [export], [tmp_path], [export / "not-yet-made"]):
        notes = []
        samples, _ = discover(export, exclude=ex, notes=notes)
        assert [s.id for s in samples] == ["E1", "E2"] and notes == []


def test_a_single_electrode_folder_skips_its_output_folder(tmp_path):
    e1 = tree(tmp_path / "E1", "psd.tif", "qc/tables/E1-0123456789ab.parquet")
    (s,), _ = discover(e1, single=True, exclude=[e1 / "qc"])
    assert [p.name for p in s.files] == ["psd.tif"]


# -- manifests and their folders stay inside -----------------------------------------------
def manifest(export, body):
    (export / "samples.toml").write_text("schema_version = 1\n[[sample]]\n" + body)


def test_a_manifest_folder_that_is_a_link_out_is_refused(tmp_path, outside):
    export = tree(tmp_path / "export", "E1/psd.tif")
    link(export / "line-9", outside)
    manifest(export, 'id = "E9"\nfolder = "line-9"\n')
    with pytest.raises(ConfigError, match="sample 'E9': folder 'line-9' is a link that leads "
                                          "out of the export folder") as ei:
        discover(export)
    assert ei.value.exit_code == 2


def test_a_manifest_folder_that_is_a_link_inside_is_followed(tmp_path):
    export = tree(tmp_path / "export", ".raw/line-9/psd.tif")
    link(export / "line-9", ".raw/line-9")
    manifest(export, 'id = "E9"\nfolder = "line-9"\n')
    (s,), _ = discover(export)
    assert s.id == "E9" and [p.relative_to(export).as_posix() for p in s.files] == [
        "line-9/psd.tif"]


@pytest.mark.parametrize("folder, match", [
    ('"out"', "folder 'out' is excluded from discovery"),
    ('".raw"', "folder '.raw' is hidden"),
    ('"E1x"', r"folder 'E1x' is not a sub-folder of .*; did you mean 'E1'\?"),
    ('"../export/E1"', "leads out of the export folder"),
])
def test_manifest_folders_that_cannot_be_read(tmp_path, folder, match):
    export = with_outputs(tmp_path / "export")
    tree(export, ".raw/psd.tif")
    manifest(export, f'id = "S"\nfolder = {folder}\n')
    with pytest.raises(ConfigError, match=match):
        discover(export, exclude=[export / "out"])


def test_a_manifest_that_is_a_link_out_is_refused_unread(tmp_path, outside):
    export = tree(tmp_path / "export", "E1/psd.tif")
    (outside / "samples.toml").write_text('schema_version = 1\n[[sample]]\nid = "E1"\n'
                                          "thickness_um = 13.7\n")
    link(export / "samples.toml", outside / "samples.toml")
    with pytest.raises(ConfigError, match="samples.toml: is a link that leads out of the "
                                          "folder"):
        load_manifest(export)
    with pytest.raises(ConfigError, match="leads out of the folder"):
        discover(export)


def test_a_manifest_that_is_a_link_inside_is_read(tmp_path):
    export = tree(tmp_path / "export", "E1/psd.tif")
    (export / ".meta").mkdir()
    (export / ".meta" / "samples.toml").write_text(
        'schema_version = 1\n[[sample]]\nid = "E1"\nthickness_um = 13.7\n')
    link(export / "samples.toml", ".meta/samples.toml")
    (s,), ident = discover(export)
    assert s.manifest["thickness_um"] == 13.7 and ident is not None
