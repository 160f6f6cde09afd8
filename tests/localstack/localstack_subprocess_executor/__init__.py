"""LocalStack Lambda runtime executor for zip-packaged Python functions, without Docker (tests only)."""
