"""Benchmarks: each prints its figures and its ratio to a baseline of the same run."""

# Long enough for DEBUG off (settings refuse a SECRET_KEY under 50 characters).
SECRET_KEY = "bench-only-secret-key-never-used-outside-local-benchmarks-0123456789"


def reference_loop_ms(rounds: int = 3) -> float:
    """Time a fixed pure-Python workload (best of `rounds`, in ms).

    Runs on different machines differ in speed; this figure, printed with
    each run, tells how fast the one that made it was.
    """
    import time

    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        table = {f"key-{i}": i for i in range(200_000)}
        sorted(table, key=table.__getitem__, reverse=True)
        best = min(best, time.perf_counter() - started)
    return best * 1000
