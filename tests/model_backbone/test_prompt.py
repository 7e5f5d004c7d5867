"""Driving prompts, BOS + right padding, and the in-process HF tokenizer round trip."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from vla_dipole.model.prompt import (
    PAD_TOKEN,
    build_prompt,
    driving_instruction,
    driving_prompt_ids,
    tokenize_prompts,
)


def test_instruction_from_one_hot_command_and_speed():
    assert driving_instruction([1, 0, 0, 0]) == "turn left at the next intersection"
    assert driving_instruction(np.array([0, 1, 0, 0])) == "go straight"
    assert driving_instruction(torch.tensor([0, 0, 1, 0])).startswith("turn right")
    assert driving_instruction([0, 0, 0, 0]) == driving_instruction([0, 0, 0, 1])
    assert driving_instruction([0, 1, 0, 0], speed=4.26) == "go straight while driving at 4.3 m/s"
    with pytest.raises(ValueError, match="driving_command"):
        driving_instruction([1, 0, 0])


def test_prompt_template_matches_openvla():
    assert build_prompt("Go Straight") == "In: What action should the robot take to go straight?\nOut:"


def test_tokenization_adds_bos_and_right_pads(tiny_tokenizer):
    assert tiny_tokenizer.pad_token == PAD_TOKEN and tiny_tokenizer.pad_token_id == 256
    ids, mask = driving_prompt_ids(tiny_tokenizer, np.eye(4), speeds=np.array([1.0, 12.5, 3.0, 0.0]))
    assert ids.shape == mask.shape and ids.shape[0] == 4
    assert (ids[:, 0] == tiny_tokenizer.bos_token_id).all()
    lengths = mask.sum(1)
    assert lengths.min() < lengths.max()  # different lengths -> padding happened
    for row, n in zip(ids, lengths, strict=True):
        assert (row[n:] == tiny_tokenizer.pad_token_id).all()
        assert tiny_tokenizer.pad_token_id not in row[:n].tolist()
    text = tiny_tokenizer.decode(ids[1, : lengths[1]], skip_special_tokens=True)
    assert text == build_prompt("go straight while driving at 12.5 m/s")
    with pytest.raises(ValueError, match="max_length"):
        tokenize_prompts(tiny_tokenizer, ["In: go"], max_length=2)


def test_tiny_tokenizer_saves_and_reloads_in_hf_format(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=False)
    prompts = [build_prompt("turn right at the next intersection"), build_prompt("follow the road")]
    for a, b in zip(
        tokenize_prompts(loaded, prompts), tokenize_prompts(tiny_tokenizer, prompts), strict=True
    ):
        assert torch.equal(a, b)
    assert loaded.pad_token_id == tiny_tokenizer.pad_token_id
