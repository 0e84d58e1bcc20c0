"""``lmforge tune``: hyperparameter search over fine-tuning runs with Optuna."""
