"""The loader under a real torch.distributed group: rank and world size come from the process
group (no explicit arguments), 2 ranks x 2 workers read every sample exactly once per epoch."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from .conftest import write_build


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, root: str, out: str) -> None:
    from vla_dipole.data import make_loader

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        loader = make_loader(root, batch_size=4, num_workers=2, shuffle_buffer=4, seed=1)
        assert (loader.dataset.rank, loader.dataset.world_size) == (rank, world)
        tokens = [t for batch in loader for t in batch["token"]]
        Path(out, f"rank{rank}.json").write_text(json.dumps(tokens))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_process_group_ranks_split_the_epoch(tmp_path):
    manifest = write_build(tmp_path / "shards", num_shards=6, per_shard=3)
    mp.spawn(_rank_main, args=(2, _free_port(), str(tmp_path / "shards"), str(tmp_path)), nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert len(seen[0]) == len(seen[1]) == 9
    assert len(set(seen[0]) | set(seen[1])) == manifest["num_samples"] == 18
