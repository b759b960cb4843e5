"""The data layer: example records, the shipped corpus, tasks and their metrics."""
