"""Driving prompts for the OpenVLA backbone, their tokenization, and a tiny HF tokenizer for tests.

Public API:
- ``COMMAND_INSTRUCTIONS``: NAVSIM one-hot command order [left, straight, right, unknown] -> phrase.
- ``driving_instruction(command, speed=None) -> str``: e.g. "turn left at the next intersection while
  driving at 4.2 m/s" (lower-cased, as OpenVLA trains and evaluates).
- ``build_prompt(instruction) -> str``: OpenVLA's inference template
  ``"In: What action should the robot take to {instruction}?\\nOut:"``.
- ``tokenize_prompts(tokenizer, prompts, max_length=None) -> (input_ids [B, L], attention_mask [B, L])``
  with BOS first and right padding with the tokenizer's pad id (``<PAD>``), like OpenVLA.
- ``driving_prompt_ids(tokenizer, commands [B, 4], speeds [B] | None)``: the three steps at once.
  (OpenVLA's ``predict_action`` also appends the empty "▁" piece, id 29871, to match its training
  prompts "...Out: "; we read hidden states for a continuous head, not decoded tokens, so we do not.)
- ``build_tiny_tokenizer(vocab_size=256)``: a Llama-style (Metaspace + BPE with byte fallback) HF tokenizer
  trained in-process on driving phrases, with ``<PAD>`` added at id ``vocab_size``; no downloads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
PAD_TOKEN = "<PAD>"

COMMAND_INSTRUCTIONS: tuple[str, ...] = (
    "turn left at the next intersection",
    "go straight",
    "turn right at the next intersection",
    "follow the road",
)


def driving_instruction(
    command: Sequence[float] | np.ndarray | torch.Tensor, speed: float | None = None
) -> str:
    """Instruction from a one-hot driving command [left, straight, right, unknown] and optional ego speed (m/s)."""
    cmd = np.asarray(command.cpu() if isinstance(command, torch.Tensor) else command, dtype=np.float64)
    if cmd.shape != (len(COMMAND_INSTRUCTIONS),):
        raise ValueError(f"driving_command: expected a one-hot vector of length 4, got shape {cmd.shape}")
    if cmd.sum() == 0:
        idx = 3  # no command given: NAVSIM's "unknown"
    else:
        idx = int(np.argmax(cmd))
    text = COMMAND_INSTRUCTIONS[idx]
    if speed is not None:
        text = f"{text} while driving at {float(speed):.1f} m/s"
    return text.lower()


def build_prompt(instruction: str) -> str:
    """OpenVLA's inference prompt; the instruction is lower-cased as in training."""
    return PROMPT_TEMPLATE.format(instruction=instruction.lower())


def tokenize_prompts(
    tokenizer, prompts: Sequence[str], max_length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize with BOS, right-pad with ``<PAD>``; raises if a prompt exceeds ``max_length``."""
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "tokenizer has no pad token: OpenVLA's tokenizer adds '<PAD>' (see build_tiny_tokenizer)"
        )
    enc = tokenizer(list(prompts), add_special_tokens=True, padding=False)
    rows = enc["input_ids"]
    bos = tokenizer.bos_token_id
    for i, row in enumerate(rows):
        if not row or row[0] != bos:
            rows[i] = [bos, *row]
    longest = max(len(r) for r in rows)
    if max_length is not None and longest > max_length:
        raise ValueError(f"prompt of {longest} tokens exceeds max_length={max_length}")
    ids = torch.full((len(rows), longest), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def driving_prompt_ids(
    tokenizer,
    commands: np.ndarray | torch.Tensor,
    speeds: np.ndarray | torch.Tensor | None = None,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of one-hot commands [B, 4] (+ speeds [B]) -> prompt ids and attention mask."""
    prompts = [
        build_prompt(driving_instruction(cmd, None if speeds is None else float(speeds[i])))
        for i, cmd in enumerate(commands)
    ]
    return tokenize_prompts(tokenizer, prompts, max_length)


def _tiny_corpus() -> list[str]:
    lines = []
    for phrase in COMMAND_INSTRUCTIONS:
        for speed in np.linspace(0.0, 20.0, 41):
            lines.append(build_prompt(f"{phrase} while driving at {speed:.1f} m/s"))
        lines.append(build_prompt(phrase))
    lines += ["The quick brown fox jumps over the lazy dog.", "0123456789 .,:;?!-+/()"]
    return lines


def build_tiny_tokenizer(vocab_size: int = 256):
    """A real HF Llama-style fast tokenizer (BOS/EOS/UNK at 0-2, ``<PAD>`` appended) trained in-process."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    alphabet = [chr(c) for c in range(32, 127)] + ["▁", "\n"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(_tiny_corpus(), trainer)
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"tiny tokenizer trained to {tok.get_vocab_size()} tokens, wanted {vocab_size}")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="right",
        model_max_length=2048,
    )
    hf.add_special_tokens({"pad_token": PAD_TOKEN})
    return hf
