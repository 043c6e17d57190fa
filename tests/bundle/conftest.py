from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bundle.built import Built, built_bundle, cleanup


@pytest.fixture(scope="session")
def built() -> Iterator[Built]:
    yield built_bundle()
    cleanup()
