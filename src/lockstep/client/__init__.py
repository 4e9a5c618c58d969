"""Python clients of a Lockstep server: the primary role and the companion role, used by the CLI."""
