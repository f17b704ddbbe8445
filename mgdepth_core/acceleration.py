"""Speed settings the DepthEstimator applies to a model: mixed precision and ``torch.compile`` of the networks.

Only the pure network parts are compiled (fixed shapes for a fixed image size): the pose net, the teacher, the
student's matching features and its layers after the cost volume, the depth decoders and the flow network. The cost
volume (data-dependent on the CPU), the static reference and the estimator's bookkeeping stay eager.
"""

from __future__ import annotations

import torch

AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``EstimatorConfig.autocast`` on ``device`` (None = float32 throughout)."""
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else None
    if setting == "off":
        return None
    if setting not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast must be auto, off, float16 or bfloat16, got {setting!r}")
    return AUTOCAST_DTYPES[setting]


def compile_networks(model: torch.nn.Module, mode: str) -> list[str]:
    """``torch.compile`` the networks of a Manydepth or Manydepth2 model in place (``mode``: default or
    reduce-overhead, i.e. CUDA graphs), with inductor's freezing (call them under ``torch.inference_mode``).
    Returns the names of what was compiled."""
    inductor = {"freezing": True}  # weights as constants: prepacked oneDNN convolutions with fused activations
    if mode == "reduce-overhead":
        inductor["triton.cudagraphs"] = True
    options = {"dynamic": False, "options": inductor}
    compiled = []
    for name in ("pose_encoder", "pose", "mono_encoder", "mono_depth", "depth"):
        module = getattr(model, name, None)
        if module is not None:
            module.compile(**options)
            compiled.append(name)
    encoder = model.encoder  # the cost volume between its two halves stays eager
    for method in ("matching_features", "fuse_and_encode"):
        setattr(encoder, method, torch.compile(getattr(encoder, method), **options))
        compiled.append(f"encoder.{method}")
    flow = getattr(model, "flow", None)
    if flow is not None and flow.backend == "gmflow":
        net = flow.net
        net.backbone.compile(**options)
        net.transformer.compile(**options)
        compiled += ["flow.backbone", "flow.transformer"]
    return compiled
