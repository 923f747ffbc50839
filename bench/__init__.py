"""Benchmarks: each prints its figures and its ratio to a baseline of the same run."""

# Long enough for DEBUG off (settings refuse a SECRET_KEY under 50 characters).
SECRET_KEY = "bench-only-secret-key-never-used-outside-local-benchmarks-0123456789"
