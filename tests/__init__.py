"""The test suites (unit/, integration/, localstack/, docker/) and what they share (helpers/). A package, so that
`tests.helpers` is ours and not a `tests` package some dependency installs into site-packages."""
