"""Generated gRPC modules for package waka.v1 (regenerate with scripts/gen-proto)."""
