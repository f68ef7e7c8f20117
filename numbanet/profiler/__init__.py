"""The profiler: where a training step's time goes, kernel by kernel, against the
machine's roofline (session.py: `numbanet.profile()`; `numbanet profile` on the command
line: run.py)."""
from numbanet.profiler.session import Profile, profile

__all__ = ["Profile", "profile"]
