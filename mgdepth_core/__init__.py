"""mgdepth core: motion-aware self-supervised monocular depth (Manydepth, Manydepth2, Dyna-DM), no ROS."""

__version__ = "0.1.0"
