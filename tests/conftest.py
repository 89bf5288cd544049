"""Shared test setup: no test writes into the user's real corpus cache."""

import pytest


@pytest.fixture(autouse=True)
def _private_corpus_cache(tmp_path_factory, monkeypatch):
    """Every test (and every subprocess it starts) gets its own corpus cache directory."""
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path_factory.mktemp("corpus-cache")))
