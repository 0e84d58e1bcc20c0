"""Fine-tuning on downstream tasks."""
