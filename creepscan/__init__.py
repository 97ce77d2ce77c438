"""creepscan: how cheaply can a frozen foundation model be repurposed for prohibited tasks?"""
import os as _os

# OpenMP threads that finish a parallel region sleep instead of spinning (set before anything here
# imports torch, whose OpenMP runtime reads it once at load; a value the user set wins). Spinning
# threads on a machine with other work fight for the CPUs: the attacks' many small batched fits ran
# 15-30x slower on a loaded 2-core machine with torch's default (benchmarks/threads.py, wait policy
# rows). The wait policy changes no arithmetic, only how idle threads wait.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
