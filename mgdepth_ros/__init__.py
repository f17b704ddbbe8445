"""ROS 2 face of mgdepth: nodes, message conversions and bag tools."""
