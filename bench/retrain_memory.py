"""Benchmark: peak RSS of building the curated training set (mining included) at full size.

The heaviest part of the ``retrained_model`` step, outside Dagster, from a home that
``bench/scale.py`` left (its raw samples, RPR scores, curation ledger and reference model):
the process's RSS is sampled every 0.2 s while ``training_sets(..., ("curated",))`` mines the
variants and fills the training set, once with the heap trimmed after mining (the code) and
once without (``trim_heap`` replaced by a no-op), each in a fresh process.

Run: .venv/bin/python bench/retrain_memory.py /tmp/robust-data-scale/home-70000 fashion-scale-70000
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from results import cpu_model, record


def probe(home: str, partition: str, trim: bool) -> str:
    """One measurement in this process; a line of figures."""
    from robust_data.curation.presets import preset_from_params
    from robust_data.ingest.arrays import decode_samples
    from robust_data.report.retrain import curation_inputs, stored_curated_inputs, training_sets
    from robust_data.scoring.device import release_memory, tune_allocator
    from robust_data.scoring.reference import load_reference
    from robust_data.store.schema import read_params
    from robust_data.store.store import Store

    tune_allocator()
    if not trim:
        import robust_data.variants.mining as mining

        mining.trim_heap = lambda: False
    peak = [0.0]

    def rss() -> float:
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("VmRSS"))
        return int(line.split()[1]) / 2**20

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss())
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    store = Store.open(Path(home))
    raw, rpr, ledger, ref = (
        store.read(t, partition)
        for t in ("raw_samples", "rpr_scores", "curation_ledger", "reference_model")
    )
    chosen = preset_from_params(read_params(ledger.schema))
    reference, _ = load_reference(ref)
    data = decode_samples(raw)
    train = data.where(data.splits == "train")
    kept, steps = curation_inputs(train, ledger, rpr)
    inputs = replace(stored_curated_inputs(train, ledger, rpr), model=reference.model)
    del raw, data
    release_memory()
    time.sleep(0.5)
    base, peak[0] = rss(), 0.0
    start = time.perf_counter()
    (built,) = training_sets(train, kept, steps, chosen, 0, 10, 250, ("curated",), inputs).values()
    seconds = time.perf_counter() - start
    time.sleep(0.5)
    return (
        f"{base:.2f}|{len(built.labels):,}|{built.images.nbytes / 2**30:.2f}|{seconds:.0f}|"
        f"{peak[0]:.2f}|{rss():.2f}"
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--probe":  # one mode, in this process
        print(probe(sys.argv[2], sys.argv[3], sys.argv[4] == "trim"))
        return
    home, partition = sys.argv[1], sys.argv[2]
    rows = []
    for mode in ("no trim (before)", "trim after mining"):
        out = (
            subprocess.run(
                [sys.executable, __file__, "--probe", home, partition, mode.split()[0]],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        rows.append([mode, *out.split("|")])
        print(rows[-1], flush=True)
    record(
        "Peak RSS of building the curated training set at full size",
        f"`python bench/retrain_memory.py {home} {partition}`: `training_sets(..., "
        '("curated",))` (mining and filling the set, as in retrained_model) on a finished '
        "bench/scale.py home, RSS sampled every 0.2 s, each mode in a fresh process; "
        f"{cpu_model()}.",
        ["mode", "RSS before GB", "images", "set GB", "seconds", "peak RSS GB", "RSS after GB"],
        rows,
        "RSS after: what the training that follows starts from.",
    )


if __name__ == "__main__":
    main()
