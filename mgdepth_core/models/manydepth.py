"""Manydepth (Watson et al., CVPR 2021): ResNet cost-volume student, ResNet teacher, ResNet pose net."""

from __future__ import annotations

import torch

from mgdepth_core.models import ModelConfig
from mgdepth_core.models.base import MultiFrameDepthModel
from mgdepth_core.models.cost_volume import ResnetEncoderMatching
from mgdepth_core.models.decoders import DepthDecoder
from mgdepth_core.models.pose import PoseDecoder
from mgdepth_core.models.resnet import ResnetEncoder


class ManydepthModel(MultiFrameDepthModel):
    """The six Manydepth networks; ``state_dict()`` keys are ``<file>.<official key>`` for the six weight files.

    ``min_depth_bin`` / ``max_depth_bin`` (0-d buffers, metres) hold the cost-volume range.
    """

    method = "manydepth"
    has_teacher = True  # False when loaded from a folder without teacher weights
    accepts_lookup_features = True  # multi_frame_forward takes context["lookup_features"] (streaming cache)

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig(method="manydepth")
        if config.height % 32 or config.width % 32:
            raise ValueError(f"model resolution must be a multiple of 32, got {config.height}×{config.width}")
        self.encoder = ResnetEncoderMatching(config.num_layers, config.pretrained, config.num_depth_bins,
                                             config.depth_binning)
        self.depth = DepthDecoder(self.encoder.num_ch_enc)
        self.mono_encoder = ResnetEncoder(config.teacher_num_layers, config.pretrained)
        self.mono_depth = DepthDecoder(self.mono_encoder.num_ch_enc)
        self.pose_encoder = ResnetEncoder(config.teacher_num_layers, config.pretrained, num_input_images=2)
        self.pose = PoseDecoder(self.pose_encoder.num_ch_enc[-1], num_frames=2)
        self.register_buffer("min_depth_bin", torch.tensor(float(config.min_depth_bin)))
        self.register_buffer("max_depth_bin", torch.tensor(float(config.max_depth_bin)))

    def matching_features(self, image: torch.Tensor) -> torch.Tensor:
        """The lookup features of a frame (B×C×H/4×W/4), as :meth:`multi_frame_forward` computes them."""
        with torch.no_grad():
            return self.encoder.matching_features(image)[1]

    def multi_frame_forward(self, image: torch.Tensor, lookup: torch.Tensor | None, T_lookup_current: torch.Tensor,
                            K: torch.Tensor, **context) -> dict:
        """Student forward. Besides the interface's outputs: ``"cost_volume_depth"`` (metres of the lowest-cost
        bin, B×1×H/4×W/4) and ``"matching_features"`` (this frame's lookup features for the next one).

        ``context["lookup_features"]`` (B×C×H/4×W/4) replaces encoding ``lookup`` (which may then be None).
        """
        lookup_features = context.get("lookup_features")
        if lookup_features is None:
            if lookup is None:
                raise ValueError("multi_frame_forward needs the lookup image or context['lookup_features']")
            lookup_features = self.matching_features(lookup)
        return self.student_network(image, lookup_features, T_lookup_current, K)
