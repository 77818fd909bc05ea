"""Previews kept between runs: what goes in comes back (pictures' precision), safely."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.report import preview_cache as pc

KEY = "0123456789ab" + "f" * 52


def test_round_trip_keeps_structure_integer_keys_and_values(tmp_path):
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    z = np.array([[0.1, np.nan], [0.25, -1.5]])
    art = {"sem": [{"path": "a.tif", "image": np.ones((2, 2), np.uint8), "labels": labels,
                    "phase_of_label": {1: "carbon", 2: "silver"}, "scale": 0.5,
                    "points": [(1, 2), (3, 4)], "layer_rows": None}],
           "height": [{"z_um": z, "pixel_um": 0.2, "Sz_um": np.float64(0.9)}],
           "histogram": {"ecd_nm": np.array([40.5, 81.25]), "modes": [{"n": 3}]}}
    path = pc.save(tmp_path, "S1", KEY, art)
    assert path == tmp_path / "previews" / "S1-0123456789ab.npz"
    back = pc.load(tmp_path, "S1", KEY)
    sem = back["sem"][0]
    assert sem["phase_of_label"] == {1: "carbon", 2: "silver"}
    assert sem["labels"].dtype == np.uint8 and np.array_equal(sem["labels"], labels)
    assert sem["points"] == [[1, 2], [3, 4]] and sem["layer_rows"] is None
    np.testing.assert_allclose(back["height"][0]["z_um"], z, rtol=1e-7, equal_nan=True)
    assert back["height"][0]["Sz_um"] == 0.9 and back["histogram"]["modes"] == [{"n": 3}]
    assert pc.load(tmp_path, "S1", "f" * 64) is None  # another key


def test_a_new_key_replaces_the_sample_s_older_previews_only(tmp_path):
    pc.save(tmp_path, "S1", KEY, {"a": np.zeros(2)})
    pc.save(tmp_path, "S1-b", KEY, {"a": np.zeros(2)})
    pc.save(tmp_path, "S1", "e" * 64, {"a": np.ones(2)})
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == [
        "S1-b-0123456789ab.npz", "S1-eeeeeeeeeeee.npz"]


def test_what_cannot_be_kept_safely_is_not_kept(tmp_path):
    assert pc.save(tmp_path, "S1", KEY, {"a": np.array(["x", None], dtype=object)}) is None
    assert not (tmp_path / "previews" / "S1-0123456789ab.npz").exists()
    # a file with a pickled object array is refused on load (allow_pickle=False)
    (tmp_path / "previews").mkdir(exist_ok=True)
    np.savez(tmp_path / "previews" / "S1-0123456789ab.npz",
             __skeleton__=np.frombuffer(b'{"a": {"__array__": "a0"}}', np.uint8),
             a0=np.array([{"x": 1}], dtype=object))
    assert pc.load(tmp_path, "S1", KEY) is None


def test_a_link_planted_at_the_old_temporary_name_does_not_redirect_the_write(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "previews").mkdir()
    link = tmp_path / "previews" / ".S1-0123456789ab.tmp.npz"
    link.symlink_to(victim)
    path = pc.save(tmp_path, "S1", KEY, {"a": np.arange(3)})
    assert victim.read_bytes() == b"precious" and link.is_symlink()
    assert not path.is_symlink() and np.array_equal(pc.load(tmp_path, "S1", KEY)["a"],
                                                    np.arange(3))


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing(tmp_path, monkeypatch):
    from pipeline.fsutil import OutputError
    from tests.helpers import enospc

    path = pc.save(tmp_path, "S1", KEY, {"a": np.zeros(2)})
    enospc(monkeypatch)
    with pytest.raises(OutputError) as exc:
        pc.save(tmp_path, "S1", KEY, {"a": np.ones(2)})
    assert str(exc.value) == f"{path}: cannot write: No space left on device"
    assert [p.name for p in (tmp_path / "previews").iterdir()] == [path.name]
    assert np.array_equal(pc.load(tmp_path, "S1", KEY)["a"], np.zeros(2))


def test_a_full_disk_is_an_output_error(full_disk):
    from pipeline.fsutil import OutputError

    noise = np.random.default_rng(0).random((600, 600))  # does not compress: > 2 MB
    with pytest.raises(OutputError, match=r"S1-0123456789ab.npz: cannot write: No space"):
        pc.save(full_disk, "S1", KEY, {"z": noise})
    assert list((full_disk / "previews").iterdir()) == []
