"""The worker's collector settings once it serves (gateway/runtime/worker.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.runtime import worker


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_frozen_and_collections_spaced() -> None:
    survivor = [object()]  # allocated before start-up ends: lives as long as the worker
    worker.settle_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == worker.GC_THRESHOLDS
    assert gc.get_threshold()[0] > 700  # CPython's default: a young collection per 700
    # Frozen objects are out of the collector's walk, not out of reference counting.
    assert not any(o is survivor for o in gc.get_objects())
    gc.unfreeze()
    assert any(o is survivor for o in gc.get_objects())
