"""Build hook: ship the repository's calibration/ inside the package as pipeline/_calibration/.

Everything else is declared in pyproject.toml. calibration/ (specs, recipes, discovery rules,
materials, instrument profiles) stays at the top of the repository, the one copy in version
control; a wheel or a regular install gets it as package data under pipeline/_calibration/,
where `pipeline.config_files` finds it through importlib.resources. An editable install
copies nothing: the package then reads the repository's calibration/ directly. An sdist
carries calibration/ so that a wheel built from it has the same files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = "calibration"
TARGET = ("pipeline", "_calibration")


def calibration_files(root: str = SOURCE) -> list[str]:
    """Every file under calibration/ (relative to it, '/'-separated), hidden ones excepted."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if not name.startswith("."):
                out.append(Path(folder, name).relative_to(root).as_posix())
    return out


class build_py_with_calibration(build_py):
    """build_py that also copies calibration/ into the built package."""

    def _calibration_mapping(self) -> list[tuple[str, str]]:
        target = os.path.join(self.build_lib, *TARGET)
        return [(os.path.join(target, *rel.split("/")), os.path.join(SOURCE, *rel.split("/")))
                for rel in calibration_files()]

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        if not os.path.isdir(SOURCE):
            raise FileNotFoundError(f"{SOURCE}/ is missing from the source tree; it holds the "
                                    "default specs, recipes and profiles the package ships")
        # a file removed from calibration/ must not survive from an earlier build
        shutil.rmtree(os.path.join(self.build_lib, *TARGET), ignore_errors=True)
        for dest, src in self._calibration_mapping():
            self.mkpath(os.path.dirname(dest))
            self.copy_file(src, dest)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return outputs + [dest for dest, _src in self._calibration_mapping()]

    def get_source_files(self) -> list[str]:
        # what sdist adds to the source distribution
        return super().get_source_files() + [f"{SOURCE}/{rel}" for rel in calibration_files()]


setup(cmdclass={"build_py": build_py_with_calibration})
