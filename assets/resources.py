"""Resources: the home folder, the compute device, the Parquet IO manager, transient retries."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OpExecutionContext,
    OutputContext,
    RetryRequested,
)

from robust_data.errors import RobustDataError
from robust_data.io.parquet import read_parquet, write_parquet
from robust_data.store.home import table_location
from robust_data.store.store import Store

#: Compute device for every step that runs a model: ``auto`` (CUDA when present), cpu, cuda.
DEVICE_ENV = "ROBUST_DATA_DEVICE"
#: RPR shards (steps) per scoring when the run config does not set ``shards``.
SHARDS_ENV = "ROBUST_DATA_RPR_SHARDS"
#: The inbox folder the sensor watches (default ``<home>/inbox``).
INBOX_ENV = "ROBUST_DATA_INBOX"
#: Seconds an inbox entry must be unchanged before the sensor takes it.
SETTLE_ENV = "ROBUST_DATA_INBOX_SETTLE_SECONDS"
#: Cron string of the curation schedule.
CRON_ENV = "ROBUST_DATA_SCHEDULE_CRON"
DEFAULT_CRON = "0 3 * * *"
#: Steps run at once by the multiprocess executor.
MAX_CONCURRENT_ENV = "ROBUST_DATA_MAX_CONCURRENT"
#: ``multiprocess`` (steps as local processes), ``k8s`` (steps as pods) or ``celery`` (steps
#: as tasks on Celery workers that share the Dagster instance and the store).
EXECUTOR_ENV = "ROBUST_DATA_EXECUTOR"
EXECUTORS = ("multiprocess", "k8s", "celery")


@dataclass(frozen=True)
class Settings:
    """Every environment variable the Dagster side reads, read in one place at run time.

    (The home and the storage root, ``ROBUST_DATA_HOME`` and ``ROBUST_DATA_STORE``, are the
    core's: :meth:`robust_data.store.store.Store.open` resolves them.)

    Attributes
    ----------
    device : str
        ``$ROBUST_DATA_DEVICE``: ``auto``, ``cpu`` or ``cuda``.
    rpr_shards : int
        ``$ROBUST_DATA_RPR_SHARDS`` (>= 1).
    inbox : str or None
        ``$ROBUST_DATA_INBOX``; None: ``<home>/inbox``.
    settle_seconds : float
        ``$ROBUST_DATA_INBOX_SETTLE_SECONDS`` (>= 0).
    cron : str
        ``$ROBUST_DATA_SCHEDULE_CRON`` (checked by the schedule).
    max_concurrent : int
        ``$ROBUST_DATA_MAX_CONCURRENT`` (>= 1).
    executor : str
        ``$ROBUST_DATA_EXECUTOR``: one of :data:`EXECUTORS`.
    """

    device: str = "auto"
    rpr_shards: int = 1
    inbox: str | None = None
    settle_seconds: float = 5.0
    cron: str = DEFAULT_CRON
    max_concurrent: int = 2
    executor: str = "multiprocess"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of ``environ`` (default: this process's environment).

        Raises
        ------
        RobustDataError
            One line naming the variable, what it holds and what it should.
        """
        env = os.environ if environ is None else environ
        executor = env.get(EXECUTOR_ENV) or "multiprocess"
        if executor not in EXECUTORS:
            raise RobustDataError(
                f"{EXECUTOR_ENV} to be one of {', '.join(EXECUTORS)}",
                repr(executor),
                "set it to one of those, or unset it",
            )
        return cls(
            device=env.get(DEVICE_ENV) or "auto",
            rpr_shards=_whole(env, SHARDS_ENV, 1),
            inbox=env.get(INBOX_ENV) or None,
            settle_seconds=_seconds(env, SETTLE_ENV, 5.0),
            cron=env.get(CRON_ENV) or DEFAULT_CRON,
            max_concurrent=_whole(env, MAX_CONCURRENT_ENV, 2),
            executor=executor,
        )


def _whole(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key) or str(default)
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise RobustDataError(f"{key} to be an integer >= 1", repr(raw), "set e.g. 2, or unset it")
    return int(raw)


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key) or str(default)
    try:
        return max(float(raw), 0.0)
    except ValueError:
        raise RobustDataError(f"{key} to be a number of seconds", repr(raw), "set e.g. 5") from None


#: Steps that score or train ask the Kubernetes executor for a GPU (ignored when run locally).
GPU_STEP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "limits": {"nvidia.com/gpu": "1"},
                "requests": {"cpu": "2", "memory": "8Gi"},
            }
        }
    }
}

#: Concurrency pool of the steps that use a GPU (scoring, fold, retraining and evaluation
#: steps): ``dagster instance concurrency set gpu N`` (or ``pools`` in dagster.yaml) bounds
#: how many of them run at once across all runs; ``make demo`` and tests set no limit.
GPU_POOL = "gpu"

#: Retries of a step that failed for a reason that can pass, and the first wait (doubling).
TRANSIENT_RETRIES = 3
TRANSIENT_WAIT_SECONDS = 5.0


class HomeResource(ConfigurableResource):
    """The robust-data home folder: dataset registry and storage root."""

    path: str

    def store(self) -> Store:
        return Store.open(self.path)


class ComputeResource(ConfigurableResource):
    """Where models run: ``device`` auto/cpu/cuda, ``precision`` auto/fp32/bf16.

    A step's own config (``device``/``precision`` fields) wins when it is set.
    """

    device: str = "auto"
    precision: str = "auto"


def transient(error: BaseException) -> bool:
    """Whether a failure can pass on a retry: GPU out of memory, or a locked storage file."""
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(error, sqlite3.OperationalError):
        return "locked" in str(error) or "busy" in str(error)
    if isinstance(error, BlockingIOError):
        return True
    return isinstance(error, OSError) and error.errno in (errno.EAGAIN, errno.EBUSY, errno.ETXTBSY)


@contextmanager
def transient_failures_retried(
    context: AssetExecutionContext | OpExecutionContext,
) -> Iterator[None]:
    """Turn a transient failure into a Dagster retry with exponential backoff.

    Waits ``TRANSIENT_WAIT_SECONDS * 2**retry`` (5, 10, 20 s) for at most
    ``TRANSIENT_RETRIES`` retries; any other failure fails the step at once.
    """
    try:
        yield
    except Exception as error:
        if not transient(error):
            raise
        wait = TRANSIENT_WAIT_SECONDS * 2**context.retry_number
        context.log.warning(
            f"{type(error).__name__}: {error}; retry {context.retry_number + 1} of "
            f"{TRANSIENT_RETRIES} in {wait:g} s"
        )
        raise RetryRequested(max_retries=TRANSIENT_RETRIES, seconds_to_wait=wait) from error


class ParquetIOManager(ConfigurableIOManager):
    """Stores each output (a ``pyarrow.Table``) as Parquet, never as a pickle.

    ``root`` is a local folder or an fsspec URL (``s3://bucket/prefix``). Layout:
    ``<root>/<asset>/<partition>.parquet`` for partitioned assets, ``<root>/<asset>.parquet``
    otherwise, and ``<root>/_steps/<run id>/<step>/<output>.parquet`` for the outputs of steps
    inside a graph-backed asset (the RPR shards). Local writes are atomic (temp file, then
    rename); a URL gets the whole file in one put.
    """

    root: str

    def _location(self, context: InputContext | OutputContext) -> str:
        if isinstance(context, InputContext):
            upstream = context.upstream_output
            if not context.has_asset_key and upstream is not None:
                return self._location(upstream)
        if context.has_asset_key:
            partition = context.partition_key if context.has_partition_key else None
            return table_location(self.root, "/".join(context.asset_key.path), partition)
        run_id, step, output, *mapping = context.get_identifier()
        name = "__".join([output, *mapping])
        return table_location(self.root, f"_steps/{run_id}/{step}", name)

    def handle_output(self, context: OutputContext, obj: pa.Table) -> None:
        if not isinstance(obj, pa.Table):
            what = context.asset_key.to_user_string() if context.has_asset_key else context.step_key
            raise TypeError(
                f"expected a pyarrow.Table from {what}; found {type(obj).__name__}; return a "
                "table (this IO manager never pickles)"
            )
        location = self._location(context)
        write_parquet(obj, location)  # atomic: a temporary file renamed, or one put
        if context.has_asset_key:
            context.add_output_metadata({"path": MetadataValue.path(location)})

    def load_input(self, context: InputContext) -> pa.Table:
        location = self._location(context)
        try:
            return read_parquet(location)
        except FileNotFoundError:
            what = context.asset_key.to_user_string() if context.has_asset_key else "the step"
            raise FileNotFoundError(
                f"expected upstream table at {location}; found no file; materialize {what} first"
            ) from None


__all__ = [
    "GPU_POOL",
    "GPU_STEP_TAGS",
    "ComputeResource",
    "HomeResource",
    "ParquetIOManager",
    "Settings",
    "transient",
    "transient_failures_retried",
]
