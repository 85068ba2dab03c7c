"""The time ranges of a pass, the scheduler that gives them to chains, and the chain walker."""
