"""Benchmarks for botline, run with `make bench` (`python -m bench.run_all`); see docs/benchmarks.md.

Nothing here is a timed test: every benchmark starts its own processes on 127.0.0.1, stops by
itself within a bounded number of requests and seconds, and writes raw results to bench/results/.
"""
