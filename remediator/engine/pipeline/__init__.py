"""The workers that move an incident through its states, step by step."""
