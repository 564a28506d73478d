"""Benchmarks of svdk: run each as ``python -m benchmarks.NAME`` from the repository root.

See ``benchmarks/README.md`` for what each one measures.
"""
