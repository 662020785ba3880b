"""Step 1: webhooks in, stored durably, taken into incidents (dedup, correlation, targets)."""
