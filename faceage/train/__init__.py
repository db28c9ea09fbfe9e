"""The train stage: a manifest and its aligned images → runs/<name>/ (checkpoints, predictions)."""
