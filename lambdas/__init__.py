"""The workflow's three Lambda handlers, their AWS clients and their event contract (contract.py)."""
