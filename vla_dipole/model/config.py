"""``PolicyConfig``: everything that defines a ``DipolePolicy``, loaded from the YAML presets.

A preset (``configs/model/{tiny,small,openvla-7b}.yaml``) has the sections ``backbone`` (a
``BackboneConfig`` mapping, usually ``{preset: tiny}`` plus overrides), ``observation``, ``head``,
``diffusion`` and ``branch_lora``. Unknown keys raise an error naming the file and the key, because
a typo in a model config would otherwise silently train a different model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vla_dipole.model.backbone_config import BackboneConfig
from vla_dipole.model.obs_encoder import proprio_dim

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
CONFIG_FILE = "policy_config.yaml"  # a saved policy's config, next to its weights
PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"


@dataclass
class ObservationConfig:
    """Which inputs the policy sees. Images are history-major: frame 0 cameras, frame 1 cameras, ..."""

    cameras: list[str] = field(default_factory=lambda: ["cam_f0"])
    history_frames: int = 1  # image frames per camera (the last ones stored)
    ego_history: int = 1  # ego-status frames in the proprio token (the last ones stored)
    prompt_speed: bool = True  # write the current speed into the text prompt
    # stored camera frame [W, H] and JPEG quality (before the backbone's own resize); None: those of the
    # training shards, recorded in the saved policy so evaluation rebuilds the same input
    image_size: list[int] | None = None
    jpeg_quality: int | None = None

    @property
    def num_images(self) -> int:
        return len(self.cameras) * self.history_frames

    @property
    def stored_frames(self) -> int:
        """History frames a shard must store for this model (images and ego status share the frames)."""
        return max(self.history_frames, self.ego_history)

    @property
    def proprio_dim(self) -> int:
        return proprio_dim(self.ego_history)


@dataclass
class HeadConfig:
    """The conditional transformer over the waypoint tokens (one per future pose)."""

    width: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    horizon: int = 8  # future poses at 0.5 s
    action_dim: int = 4  # x, y, cos(yaw), sin(yaw)


@dataclass
class DiffusionConfig:
    """DDPM training noise and the few-step inference solver (both diffusers schedulers)."""

    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    solver: str = "ddim"  # ddim | dpmsolver++ | ddpm
    num_inference_steps: int = 10
    prediction_type: str = "epsilon"  # what the heads predict: epsilon | v_prediction | sample
    # scale of the starting noise when sampling (every caller: evaluation, agent, online rounds);
    # below 1 draws closer to the mode, 0 the deterministic DDIM mode of the starting point 0
    temperature: float = 1.0


@dataclass
class ActionConfig:
    """How trajectories become the diffusion model's actions (``processor.TrajectoryNormalizer``)."""

    residual: bool = False  # predict the deviation from the constant-velocity rollout
    per_waypoint_stats: bool = False  # fit [8, 4] mean / std on the training shards (else manifest x, y)


@dataclass
class BranchLoraConfig:
    """Branch-specific LoRA adapters ("pos", "neg") on the LLM, as in the paper's driving model."""

    enabled: bool = False
    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class PolicyConfig:
    name: str = "custom"
    # "tiny" (an in-process test tokenizer) or a directory with HF tokenizer files (the OpenVLA checkpoint)
    tokenizer: str = "tiny"
    # OpenVLA checkpoint directory to initialise the backbone from (None: random init, saved in full)
    pretrained_backbone: str | None = None
    # a `python -m vla_dipole.pretrain` output directory whose backbone weights a fresh policy starts from
    backbone_init: str | None = None
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig.preset("tiny"))
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    branch_lora: BranchLoraConfig = field(default_factory=BranchLoraConfig)

    # ---- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>") -> PolicyConfig:
        """Build from a mapping; ``source`` (a file name) goes into every error message."""
        try:  # resolve interpolations such as ${oc.env:OPENVLA_7B_PATH,null} whatever the mapping type
            d = OmegaConf.to_container(OmegaConf.create(d if d is not None else {}), resolve=True)
        except OmegaConfBaseException as e:
            raise ValueError(f"{source}: invalid model config: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{source}: model config must be a mapping, got {type(d).__name__}")
        backbone = d.pop("backbone", {"preset": "tiny"})
        sections = dict(
            observation=ObservationConfig,
            head=HeadConfig,
            diffusion=DiffusionConfig,
            action=ActionConfig,
            branch_lora=BranchLoraConfig,
        )
        schema = OmegaConf.create(
            {
                "name": "custom",
                "tokenizer": "tiny",
                "pretrained_backbone": None,
                "backbone_init": None,
                **{k: OmegaConf.structured(v) for k, v in sections.items()},
            },
            flags={"struct": True},
        )
        try:
            merged = OmegaConf.to_container(OmegaConf.merge(schema, d))
        except OmegaConfBaseException as e:
            raise ValueError(f"{source}: invalid model config: {e.__class__.__name__}: {e}".strip()) from None
        try:
            bb = BackboneConfig.from_dict(backbone)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: field 'backbone': {e}") from None
        cfg = cls(
            name=merged["name"],
            tokenizer=merged["tokenizer"],
            pretrained_backbone=merged["pretrained_backbone"],
            backbone_init=merged["backbone_init"],
            backbone=bb,
            **{k: v(**merged[k]) for k, v in sections.items()},
        )
        cfg.validate(source)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> PolicyConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model config {path} not found")
        return cls.from_dict(OmegaConf.load(path), source=str(path))

    @classmethod
    def preset(cls, name: str) -> PolicyConfig:
        """``tiny`` | ``small`` | ``openvla-7b`` from ``configs/model/``, or a path to a YAML file."""
        path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
            raise ValueError(f"model preset {name!r} not found at {path}; known presets: {known}")
        return cls.from_yaml(path)

    BRANCH_ADAPTERS = ("pos", "neg")

    def effective_backbone(self) -> BackboneConfig:
        """The backbone config with the branch-specific LoRA adapters ("pos", "neg") when enabled."""
        if not self.branch_lora.enabled:
            return self.backbone
        bl = self.branch_lora
        lora = dict(
            enabled=True,
            r=bl.r,
            alpha=bl.alpha,
            dropout=bl.dropout,
            target_modules=list(bl.target_modules),
            adapters=self.BRANCH_ADAPTERS,
        )
        return self.backbone.replace(lora=lora)

    def save_yaml(self, path: str | Path) -> None:
        OmegaConf.save(OmegaConf.create(self.to_dict()), Path(path))

    def validate(self, source: str = "<config>") -> None:
        checks = [
            ("observation.cameras", len(self.observation.cameras) >= 1, "at least one camera"),
            ("observation.history_frames", self.observation.history_frames >= 1, ">= 1"),
            ("observation.ego_history", self.observation.ego_history >= 1, ">= 1"),
            (
                "observation.image_size",
                self.observation.image_size is None
                or (len(self.observation.image_size) == 2 and min(self.observation.image_size) >= 1),
                "null or [W, H] with W, H >= 1",
            ),
            ("head.width", self.head.width % self.head.num_heads == 0, "a multiple of head.num_heads"),
            ("head.action_dim", self.head.action_dim == 4, "4 (x, y, cos yaw, sin yaw)"),
            ("diffusion.num_inference_steps", self.diffusion.num_inference_steps >= 1, ">= 1"),
            ("diffusion.temperature", self.diffusion.temperature >= 0, ">= 0"),
            (
                "diffusion.solver",
                self.diffusion.solver in ("ddim", "dpmsolver++", "ddpm"),
                "one of ddim, dpmsolver++, ddpm",
            ),
            (
                "diffusion.prediction_type",
                self.diffusion.prediction_type in PREDICTION_TYPES,
                f"one of {', '.join(PREDICTION_TYPES)}",
            ),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{source}: field '{name}' must be {expected}")
