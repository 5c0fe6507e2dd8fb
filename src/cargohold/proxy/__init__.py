"""Pull-through cache: repositories under a configured prefix are filled from an upstream registry."""
