"""What the user runs: run, status, verify, export, submit, demo; console output."""
