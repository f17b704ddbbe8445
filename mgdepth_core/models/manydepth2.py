"""Manydepth2 (Zhou et al., arXiv 2312.15268): motion-aware cost volume on a static reference frame, HRNet nets.

Sub-modules: ``encoder`` (HRNet-18 with the cost volume after stage 1) + ``depth`` (HRDepthDecoder), teacher
``mono_encoder`` (HRNet-18) + ``mono_depth`` (HRDepthDecoder), ``pose_encoder`` + ``pose`` (Manydepth's ResNet pose
net, unchanged) and a frozen ``flow`` (:class:`~mgdepth_core.models.flow.FlowEstimator`, None for Manydepth2-NF)
that is neither trained nor saved: ``state_dict()`` leaves it out and ``load_state_dict`` does not ask for it.
"""

from __future__ import annotations

import torch

from mgdepth_core.geometry import disparity_to_depth
from mgdepth_core.models import ModelConfig
from mgdepth_core.models.base import MultiFrameDepthModel
from mgdepth_core.models.flow import build_flow
from mgdepth_core.models.hr_decoder import HRDepthDecoder
from mgdepth_core.models.hrnet import HRNetEncoder, HRNetEncoderMatching
from mgdepth_core.models.pose import PoseDecoder
from mgdepth_core.models.resnet import ResnetEncoder
from mgdepth_core.models.static_reference import build_static_reference, release_lookup_without_motion
from mgdepth_core.stages import stage

FLOW_SCALE = 2  # the flow network's output and the cost volume live at 1/4 resolution


class Manydepth2Model(MultiFrameDepthModel):
    """The six Manydepth2 networks plus the frozen optical flow; ``min_depth_bin``/``max_depth_bin`` buffers."""

    method = "manydepth2"

    @property
    def accepts_lookup_features(self) -> bool:
        """Streaming cache: without flow (Manydepth2-NF) the lookup is the previous frame itself, so its stage-1
        features can be reused (``context["lookup_features"]``); with flow the lookup image is rebuilt from the
        current frame every time (static reference), so they cannot."""
        return not self.uses_flow

    @property
    def uses_flow(self) -> bool:
        """Manydepth2 proper: a flow network, or the data set's exact flow (``flow: dataset``); not NF."""
        return self.flow is not None or self.config.flow == "dataset"

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig(method="manydepth2")
        if config.height % 32 or config.width % 32:
            raise ValueError(f"model resolution must be a multiple of 32, got {config.height}×{config.width}")
        self.encoder = HRNetEncoderMatching(config.pretrained, config.num_depth_bins)
        self.depth = HRDepthDecoder()
        self.mono_encoder = HRNetEncoder(config.pretrained)
        self.mono_depth = HRDepthDecoder()
        self.pose_encoder = ResnetEncoder(config.teacher_num_layers, config.pretrained, num_input_images=2)
        self.pose = PoseDecoder(self.pose_encoder.num_ch_enc[-1], num_frames=2)
        self.flow = build_flow(config.flow, config.flow_weights)
        self.register_buffer("min_depth_bin", torch.tensor(float(config.min_depth_bin)))
        self.register_buffer("max_depth_bin", torch.tensor(float(config.max_depth_bin)))
        self._register_state_dict_hook(_drop_flow_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_flow_keys)

    def matching_features(self, image: torch.Tensor) -> torch.Tensor:
        """Stage-1 features of a lookup image (B×256×H/4×W/4), no gradients."""
        with torch.no_grad():
            return self.encoder.matching_features(image)[2]

    def uses_static_reference(self, epoch: int | None) -> bool:
        """Whether the lookup image is blended with the static reference: flow variant, and at test time
        (``epoch`` None) or from ``flow_start_epoch`` on during training."""
        return self.uses_flow and (epoch is None or epoch >= self.config.flow_start_epoch)

    def quarter_flow(self, image: torch.Tensor, lookup: torch.Tensor, image_features: torch.Tensor | None = None,
                     lookup_features: torch.Tensor | None = None) -> torch.Tensor:
        """Optical flow image → lookup at 1/4 resolution in 1/4-res pixels (B×2×H/4×W/4); ``*_features``:
        :meth:`flow_features` of either frame where known."""
        if self.flow is None:
            raise RuntimeError("this Manydepth2 model has no optical flow (flow='none', Manydepth2-NF)")
        return self.flow.at_scale(image, lookup, FLOW_SCALE, self.config.flow_input_scale, image_features,
                                  lookup_features)

    def flow_features(self, image: torch.Tensor) -> torch.Tensor | None:
        """The flow network's features of one frame, reusable when it is the lookup of the next pair (GMFlow);
        None where the flow network cannot reuse them (RAFT, no flow)."""
        if self.flow is None or not self.flow.reuses_features:
            return None
        return self.flow.encode(self.flow.resize_input(image, self.config.flow_input_scale))

    def multi_frame_forward(self, image: torch.Tensor, lookup: torch.Tensor, T_lookup_current: torch.Tensor,
                            K: torch.Tensor, **context) -> dict:
        """Student forward. ``context`` (all optional): ``teacher_depth`` B×1×H×W metres (else the teacher runs
        here without gradients), ``raw_image``/``raw_lookup`` un-augmented frames for the flow (else ``image`` /
        ``lookup``), ``flow`` B×2×h×w optical flow image → lookup in pixels of its own h×w grid, any resolution
        (replaces running the flow network), ``epoch``,
        ``lookup_features`` (B×256×H/4×W/4, the previous frame's ``"matching_features"``; used only without the
        static reference, where the lookup image is the previous frame itself; ``lookup`` may then be None),
        ``lookup_flow_features`` (the previous frame's ``"flow_features"``: its flow-network features, GMFlow),
        ``skip_release_motion`` (static_reference release only: no flow and no teacher, the lookup is
        :func:`~mgdepth_core.models.static_reference.release_lookup_without_motion`; an approximation).

        Besides the interface's outputs: ``"cost_volume_depth"`` (B×1×H/4×W/4 metres), ``"matching_features"``
        (this frame's stage-1 features for the next frame), and when the static reference is used
        ``"lookup_image"`` (B×3×H×W), ``"static_reference"`` and ``"motion_mask"`` (bool, current view), both at
        the resolution ``static_reference_resolution`` builds them, plus ``"flow_features"`` (this frame's, for
        the next pair) when the flow network ran and can reuse them.
        """
        extra = {}
        has_pose = bool((T_lookup_current.flatten(1) != 0).any())  # all-zero poses: empty volume, lookup unused
        skip_motion = context.get("skip_release_motion") and self.config.static_reference == "release"
        if has_pose and self.uses_static_reference(context.get("epoch")) and skip_motion:
            with stage("static_reference"):
                lookup = release_lookup_without_motion(lookup)
            extra["lookup_image"] = lookup
        elif has_pose and self.uses_static_reference(context.get("epoch")):
            teacher_depth = context.get("teacher_depth")
            if teacher_depth is None:
                with torch.no_grad():
                    disp = self.teacher_forward(image)[("disp", 0)]
                teacher_depth = disparity_to_depth(disp, self.config.min_depth, self.config.max_depth)[1]
            flow = context.get("flow")
            if flow is None and self.flow is None:
                raise ValueError("model.flow=dataset needs the sample's exact optical flow (context['flow']; the "
                                 "synthetic set with data.exact_flow=true carries it as flow_gt)")
            if flow is None:
                raw_image, raw_lookup = context.get("raw_image"), context.get("raw_lookup")
                flow_image = image if raw_image is None else raw_image
                with stage("flow"):
                    image_flow_features = self.flow_features(flow_image)
                    flow = self.quarter_flow(flow_image, lookup if raw_lookup is None else raw_lookup,
                                             image_flow_features, context.get("lookup_flow_features"))
                if image_flow_features is not None:
                    extra["flow_features"] = image_flow_features
            config = self.config
            with stage("static_reference"):
                static = build_static_reference(image, lookup, flow, teacher_depth.detach(), T_lookup_current, K,
                                                config.static_reference, config.motion_threshold_px,
                                                config.static_reference_blend, config.static_reference_resolution,
                                                config.clear_old_positions)
            lookup = static.lookup
            extra.update(lookup_image=lookup, static_reference=static.static_reference,
                         motion_mask=static.motion_mask)
        lookup_features = context.get("lookup_features") if "lookup_image" not in extra else None
        if lookup_features is None:
            if lookup is None:
                raise ValueError("multi_frame_forward needs the lookup image or context['lookup_features']")
            with stage("encoder"):
                lookup_features = self.matching_features(lookup)
        outputs = self.student_network(image, lookup_features, T_lookup_current, K)
        outputs.update(extra)
        return outputs


def _drop_flow_keys(module, state_dict, prefix, local_metadata):
    for key in [key for key in state_dict if key.startswith(prefix + "flow.")]:
        del state_dict[key]


def _ignore_missing_flow_keys(module, incompatible_keys):
    flow_keys = [key for key in incompatible_keys.missing_keys if key.startswith("flow.") or ".flow." in key]
    for key in flow_keys:
        incompatible_keys.missing_keys.remove(key)
