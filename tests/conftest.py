from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REALDATA


@pytest.fixture
def realdata() -> Path:
    """The folder of real instrument files; tests that need it skip when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real instrument files not present ({REALDATA.name} folder absent)")
    return REALDATA
