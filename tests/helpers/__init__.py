"""What the test suites share: sample images and models, fakes for the promotion tests, the EMF
specification, the wrappers' command line. Imported one way: `from tests.helpers.X import ...`
(pyproject.toml puts the repository root on pytest's path)."""
