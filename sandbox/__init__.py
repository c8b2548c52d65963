"""Local stand-ins for the outside world, used by `gatepass demo`, the tests and bench/."""
