"""What every data test shares: it runs isolated from the user's settings (no BPTRAIN_*
variable, no proxy, a throwaway XDG cache; see data_helpers.isolate_env). The files they read
and serve come from data_helpers: FILES and INFO, or synthetic_files() for other shapes."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_from_the_user(isolated_env):
    """Applies tests/conftest.py's isolated_env to every test in this folder."""
