"""The data layer: example records and their bounded readers, the shipped corpus, tasks and their metrics."""
