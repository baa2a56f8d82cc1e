"""Set-up tooling for dialbgm: not imported by the runtime package."""
