"""The garbage collector's young threshold while runs execute (simulations.collector)."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from simulations.collector import YOUNG_THRESHOLD, run_collection
from simulations.models import Run


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_the_young_threshold_is_raised_for_the_duration_and_restored_even_after_an_error(thresholds):
    with pytest.raises(RuntimeError), run_collection():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)  # the older generations keep their multipliers
        raise RuntimeError("a run broke")
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_runs_share_it_and_the_last_to_end_restores_it(thresholds):
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first() -> None:
        with run_collection():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with run_collection():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.get_threshold()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"after the first ended": (YOUNG_THRESHOLD, 10, 10)}
    assert gc.get_threshold() == (700, 10, 10)


def test_what_the_process_held_before_is_frozen_for_the_duration_and_handed_back(thresholds):
    gc.unfreeze()
    held = [[] for _ in range(1000)]  # containers the process made before the run
    with run_collection():
        assert gc.get_freeze_count() > len(held)  # with the modules, Django, the test's own objects
        assert not any(o is held[0] for o in gc.get_objects())  # out of every generation the collector walks
        made = [[] for _ in range(10)]
        assert any(o is made[0] for o in gc.get_objects())  # what the run makes is collected as usual
    assert gc.get_freeze_count() == 0
    assert any(o is held[0] for o in gc.get_objects())


def test_a_higher_threshold_set_by_the_process_is_kept(thresholds):
    gc.set_threshold(200_000, 5, 5)
    with run_collection():
        assert gc.get_threshold() == (200_000, 5, 5)
    assert gc.get_threshold() == (200_000, 5, 5)


@pytest.mark.django_db(transaction=True)
def test_an_in_process_run_executes_with_the_raised_threshold(catalog_tx, tmp_path, thresholds):
    from simulations.endpoints import EndpointSet
    from simulations.options import RunOptions
    from simulations.services import run_create, run_execute_async

    steps = [{"step_type": "GENERATE_HL7", "exam_id": "DX-CHEST-2V"}, {"step_type": "WAIT", "seconds": 0}]
    run = run_create(steps_json=steps, patients=2, concurrency=2, endpoints=EndpointSet(),
                     options=RunOptions(output_dir=tmp_path / "run", send=False))
    during: list[tuple[int, int, int]] = []
    # in_process: with a broker configured (the scale-out pass) the run would go to the Celery workers
    run = asyncio.run(run_execute_async(Run.objects.get(pk=run.pk), in_process=True,
                                        listeners=[lambda event: during.append(gc.get_threshold())]))
    assert run.status == Run.Status.SUCCEEDED
    assert len(during) > 4 and set(during) == {(YOUNG_THRESHOLD, 10, 10)}  # from the start event to the end
    assert gc.get_threshold() == (700, 10, 10)
