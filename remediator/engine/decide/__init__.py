"""Steps 2-4: evidence, a planner's choice, policy, breaker: one decision per alert."""
