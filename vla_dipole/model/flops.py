"""Counted FLOPs of a model call, shared by the hardware table and the policy benchmark."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils import flop_counter

PROMPT_TOKENS_7B = 32  # assumed Llama-2 tokens of the driving prompt (for estimates only)


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls / attention ``fn`` runs (torch's FlopCounterMode; elementwise ops not counted).

    torch maps its CUDA SDPA kernels to the attention formula but not the CPU flash kernel; added here.
    """
    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
    with flop_counter.FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        fn()
    return counter.get_total_flops()
