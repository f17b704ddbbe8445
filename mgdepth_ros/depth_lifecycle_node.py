"""``depth_lifecycle_node``: the depth node as a managed (lifecycle) node; same parameters, topics and processing.

    configure   read the parameters, load the weights, build the estimator and the (inactive) publishers
    activate    enable the publishers, subscribe to the inputs, start processing
    deactivate  stop processing and drop the subscriptions; the estimator stays loaded
    cleanup     destroy the publishers and free the estimator
    shutdown    whatever is running or loaded goes, from any primary state

A configure that fails (a bad parameter, weights that do not load) logs why and returns FAILURE: the node stays
unconfigured. Drive it with ``ros2 lifecycle set /mgdepth_depth configure`` (then ``activate`` …); see docs/ros.md.
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from mgdepth_ros.depth_processing import DepthProcessing, run


class DepthLifecycleNode(DepthProcessing, LifecycleNode):
    """The managed depth node; it starts unconfigured with its parameters declared."""

    def __init__(self, node_name: str = "mgdepth_depth", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self._init_depth()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure_depth()
        except Exception as error:  # any reason the weights do not load: a failed transition, not a dead node
            self.get_logger().error(f"configure failed, staying unconfigured: {type(error).__name__}: {error}")
            self._release_depth()
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the publishers first, so that the first frame goes out
        self._start_depth()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_depth()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_depth()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_depth()
        self._release_depth()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} raised: stopping and unloading, back to "
                                "unconfigured")
        self._stop_depth()
        self._release_depth()
        return super().on_error(state)


def main(args: list[str] | None = None) -> None:
    """Console script ``depth_lifecycle_node`` (``ros2 run mgdepth_ros depth_lifecycle_node``)."""
    run(DepthLifecycleNode, args)


if __name__ == "__main__":
    main()
