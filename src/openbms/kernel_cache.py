"""numba's on-disk cache of the compiled kernels, dropped when any kernel source changes.

numba keys a cached kernel on its own file's time stamp only. The kernels inline helpers of
`cell/kernels.py`, so after an update that changes a helper but not the file that inlines it
(a `git pull` touches only changed files), numba would load the old machine code and run the old
model. Here the sources of every module with compiled kernels are fingerprinted together at
import; when the fingerprint differs from the one the cache was built with, the cache is dropped
and rebuilt on the next calls (`python -m openbms.runtime.warm` rebuilds it ahead).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
KERNEL_MODULES = ("cell/kernels.py", "estimate/kernel.py", "pack/delta.py", "safety/plausibility.py", "safety/short.py")
STAMP = PACKAGE / "__pycache__" / "kernel-sources.sha256"


def sources_fingerprint() -> str:
    digest = hashlib.sha256()
    for module in KERNEL_MODULES:
        digest.update(module.encode() + b"\0" + (PACKAGE / module).read_bytes())
    return digest.hexdigest()


def drop_stale_cache() -> bool:
    """Remove the cached kernels if they were compiled from other sources; True if it did. A package
    whose cache folders cannot be written (a system install) is left alone: numba caches elsewhere."""
    fingerprint = sources_fingerprint()
    try:
        if STAMP.read_text() == fingerprint:
            return False
    except OSError:
        pass
    try:
        for module in KERNEL_MODULES:
            cache = (PACKAGE / module).parent / "__pycache__"
            for path in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
                path.unlink(missing_ok=True)
        STAMP.parent.mkdir(exist_ok=True)
        STAMP.write_text(fingerprint)
    except OSError:
        return False
    return True
