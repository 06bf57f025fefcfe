"""Transitional alias, to be deleted: src/sparse_runtime/kernel.py imports the kernel-cache helpers from here.

gRDA moved to the ``grda`` package (src/optim/grda/); import ``grda.cpu_kernel`` instead. This file holds no code
of its own and is not part of the ``grda`` distribution.
"""

from grda.cpu_kernel import *  # noqa: F401,F403
from grda.cpu_kernel import _temp_file_beside, cache_dir, compiler  # noqa: F401
