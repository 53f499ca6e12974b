"""Running planned captures: streams under the wrapper, clocks, sinks and destinations, sidecar metadata,
viewers."""
