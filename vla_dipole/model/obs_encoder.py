"""Ego status -> proprio features -> one conditioning token (as OpenVLA-OFT's proprio projector).

``ego_features`` turns the loader's ego arrays into a fixed-size vector with physical scales (metres
/ 10, m/s / 10, m/s^2 / 5, heading as cos/sin), so no statistics need fitting; ``ProprioEncoder``
maps that vector to the head width. Each diffusion head owns its own encoder, so pi+ and pi- stay
fully separate networks.
"""

from __future__ import annotations

import torch
from torch import nn

POSE_SCALE = 10.0  # m
VELOCITY_SCALE = 10.0  # m/s
ACCEL_SCALE = 5.0  # m/s^2
FEATURES_PER_FRAME = 8  # x, y, cos h, sin h, vx, vy, ax, ay
NUM_COMMANDS = 4  # left, straight, right, unknown


def proprio_dim(ego_history: int) -> int:
    """Length of the vector ``ego_features`` returns for ``ego_history`` frames."""
    return FEATURES_PER_FRAME * ego_history + NUM_COMMANDS


def ego_features(
    ego_pose: torch.Tensor,
    ego_velocity: torch.Tensor,
    ego_acceleration: torch.Tensor,
    driving_command: torch.Tensor,
    ego_history: int,
) -> torch.Tensor:
    """[B, H, 3], [B, H, 2], [B, H, 2], [B, H, 4] -> [B, proprio_dim(ego_history)].

    Uses the last ``ego_history`` frames (oldest first) and the current frame's command.
    """
    for name, t, d in (
        ("ego_pose", ego_pose, 3),
        ("ego_velocity", ego_velocity, 2),
        ("ego_acceleration", ego_acceleration, 2),
        ("driving_command", driving_command, NUM_COMMANDS),
    ):
        if t.ndim != 3 or t.shape[-1] != d:
            raise ValueError(f"{name}: expected [B, H, {d}], got {tuple(t.shape)}")
        if t.shape[1] < ego_history:
            raise ValueError(
                f"{name}: {t.shape[1]} history frames stored, the model config asks for ego_history={ego_history}"
            )
    sl = slice(-ego_history, None)
    pose = ego_pose[:, sl].float()
    frames = torch.cat(
        [
            pose[..., :2] / POSE_SCALE,
            torch.cos(pose[..., 2:3]),
            torch.sin(pose[..., 2:3]),
            ego_velocity[:, sl].float() / VELOCITY_SCALE,
            ego_acceleration[:, sl].float() / ACCEL_SCALE,
        ],
        dim=-1,
    )
    return torch.cat([frames.flatten(1), driving_command[:, -1].float()], dim=-1)


def current_speed(proprio: torch.Tensor, ego_history: int) -> torch.Tensor:
    """The current speed [B] back from an ``ego_features`` vector [B, P] (its last frame's velocity)."""
    last = FEATURES_PER_FRAME * (ego_history - 1)
    return proprio[:, last + 4 : last + 6].float().norm(dim=-1) * VELOCITY_SCALE


class ProprioEncoder(nn.Module):
    """Proprio vector [N, P] -> token [N, width] (two-layer MLP)."""

    def __init__(self, in_dim: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.net(proprio)
