"""The records that cross boundaries: alerts, proposals, decisions, previews, run results, states."""
