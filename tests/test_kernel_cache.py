"""The compiled kernels' cache is dropped when a kernel source changes, also one that is only inlined."""

from __future__ import annotations

from pathlib import Path

from openbms import kernel_cache


def test_every_module_with_compiled_kernels_is_fingerprinted():
    compiled = {
        str(path.relative_to(kernel_cache.PACKAGE))
        for path in kernel_cache.PACKAGE.rglob("*.py")
        if "@njit" in path.read_text()
    }
    assert compiled == set(kernel_cache.KERNEL_MODULES)


def test_cache_dropped_when_an_inlined_helper_changes_and_kept_otherwise(tmp_path: Path, monkeypatch):
    (tmp_path / "cell").mkdir()
    helper, user = tmp_path / "cell" / "kernels.py", tmp_path / "kernel.py"
    helper.write_text("def helper(): return 1\n")
    user.write_text("def kernel(): return helper()\n")
    cached = [
        tmp_path / "__pycache__" / "kernel.kernel-1.py311.nbi",
        tmp_path / "__pycache__" / "kernel.kernel-1.py311.1.nbc",
    ]
    monkeypatch.setattr(kernel_cache, "PACKAGE", tmp_path)
    monkeypatch.setattr(kernel_cache, "KERNEL_MODULES", ("cell/kernels.py", "kernel.py"))
    monkeypatch.setattr(kernel_cache, "STAMP", tmp_path / "__pycache__" / "kernel-sources.sha256")

    def compile_all():
        cached[0].parent.mkdir(exist_ok=True)
        for path in cached:
            path.write_bytes(b"machine code")

    compile_all()
    assert kernel_cache.drop_stale_cache()  # no stamp yet: built from unknown sources
    assert not any(path.exists() for path in cached)
    compile_all()
    assert not kernel_cache.drop_stale_cache()  # the same sources: kept
    assert all(path.exists() for path in cached)
    helper.write_text("def helper(): return 2\n")  # the user's file, numba's key, is unchanged
    assert kernel_cache.drop_stale_cache()
    assert not any(path.exists() for path in cached)
