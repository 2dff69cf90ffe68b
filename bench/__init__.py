"""kvheal's benchmarks: each module prints its figures (run from the repository root)."""
