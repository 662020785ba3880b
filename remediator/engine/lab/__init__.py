"""The lab fleet, its monitoring and the drills: test and demo tooling, never on the product path."""
