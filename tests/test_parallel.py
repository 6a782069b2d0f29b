import pytest

from asr_kd.errors import BadInputError
from asr_kd.parallel import make_executor, map_progress


def square(x: int) -> int:
    if x < 0:
        raise BadInputError(f"utterance {x} is bad")
    return x * x


@pytest.mark.parametrize("num_jobs", [1, 2])
def test_results_in_input_order(num_jobs):
    with make_executor(num_jobs) as ex:
        assert map_progress(square, range(20), ex, "t") == [x * x for x in range(20)]


def test_worker_error_reaches_caller():
    with make_executor(2) as ex:
        with pytest.raises(BadInputError, match="utterance -3 is bad"):
            map_progress(square, [1, 2, -3, 4], ex, "t")


def test_dask_cluster_executor():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        with make_executor(dask_scheduler=cluster.scheduler_address) as ex:
            assert map_progress(square, range(5), ex, "t") == [0, 1, 4, 9, 16]


def _die(x: int) -> int:
    import os
    import signal

    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
    return x


def test_a_worker_killed_by_the_system_is_one_error():
    from asr_kd.errors import AsrKdError
    from asr_kd.parallel import make_executor, map_progress

    with make_executor(2) as pool:
        with pytest.raises(AsrKdError, match="a worker process died while working"):
            map_progress(_die, [1, 2, 3, 4], pool, "test")
