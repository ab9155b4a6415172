"""The demo's real processes. Each is a small program run with `python -m agent.demo.services.<name>`."""
