"""``make bench``: measurements printed as ratios against baselines measured in the same run."""
