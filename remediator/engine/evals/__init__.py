"""The planner eval: recorded incidents scored offline (`remediator eval`)."""
