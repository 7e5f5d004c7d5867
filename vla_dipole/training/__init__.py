"""Training machinery behind `vla_dipole/train.py` (one job per module).

- `config`: configs/train/base.yaml as the schema, presets and `key=value` overrides, clear errors.
- `schedule`: batch plan (micro batch x world size x accumulation = global batch), LR in samples,
  the deterministic sample stream and the per-rank batch sampler.
- `indexed_data`: random access to the shards (world-size independent, exactly resumable positions).
- `objective`: bc / dipole / awr losses from per-sample errors; per-sample noise by stream position.
- `policy_io`: what training needs from DipolePolicy (trainable parts, the module DeepSpeed wraps, export).
- `distributed`: accelerate + DeepSpeed that really runs on CPU (gloo) and GPU (nccl).
- `checkpoint`: atomic checkpoints, keep-last-M, resume bookkeeping.
- `preemption`: SIGUSR1 / SIGTERM -> checkpoint at the step boundary + preempted.json.
- `ema`, `feature_cache`, `online` (online rounds), `tracking` (tensorboard + metrics.jsonl),
  `synthetic_shards` (tiny scored shards for tests and `benchmarks/training.py`).
"""
