"""o2o: offline-to-online reinforcement learning experiments on Ray."""
