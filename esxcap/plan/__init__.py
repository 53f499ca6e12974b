"""Pure planning: what the admin asked for (targets, recipes) -> the streams to run on each host."""
