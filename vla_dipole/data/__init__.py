"""What every consumer of the scored shards shares, below the model and the shard builder.

`shard_format` (the sample schema and its codec: arrays, JPEG), `shard_io` (shard files, manifest,
trajectory statistics), `observation` (the ONE scene -> model input conversion, used by the shard
builder and the evaluator / NAVSIM agent alike), `collate` and `TrajectoryStats`. Submodules are
imported explicitly: a shard-build worker then loads the codec without torch. The backbone's image
transform is the model's own, `vla_dipole.model.image_processing`.
"""
