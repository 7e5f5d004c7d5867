"""Speed and memory tables of each stage (`make bench`); developer tools, not part of the installed package.

Run from the repository root: `python -m benchmarks.<name>` (world, scenes, pdm, shards, backbone, policy,
training, evaluation).
"""
