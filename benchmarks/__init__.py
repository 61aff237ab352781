"""Benchmarks of jaxnas against PyTorch and of its own programs; see README.md."""


def machine() -> str:
    """The machine a benchmark ran on, in words: CPU model, cores, jax and its device."""
    import os
    import platform
    from pathlib import Path

    import jax

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip()
                   for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} on {device.platform} "
            f"({device.device_kind}), Python {platform.python_version()}")
