"""Fine-tuning, evaluation, export and the statistics of their results."""
