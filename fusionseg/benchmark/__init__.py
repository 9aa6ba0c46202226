"""Benchmarks behind `fusionseg benchmark ...`; results are recorded in benchmarks/RESULTS.md."""
