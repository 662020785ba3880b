"""Approvers, their tokens and their votes on a dry run."""
