"""The precision a run uses: `--mixed-precision auto` is bf16 where the hardware has fast bf16, float32 elsewhere.

Detected at run time, not guessed from the vendor. A CUDA GPU says whether it has bf16 arithmetic without emulation
(`torch.cuda.is_bf16_supported`). A CPU lists its bf16 instructions in /proc/cpuinfo: AMX or AVX-512 bf16 on x86,
the bf16 extension on Arm. A CPU without them (an AVX2-only one, say) emulates bf16 products, several times slower
than float32, so auto keeps float32 there; so does a system without /proc/cpuinfo. `bf16` forces it anywhere.
"""

import platform
from contextlib import nullcontext
from pathlib import Path

# torch is imported where used: the command line reads this module's names before it loads torch
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # /proc/cpuinfo "flags" (x86) and "Features" (Arm)
CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_lines() -> list[str]:
    try:
        return CPUINFO.read_text().splitlines()
    except OSError:
        return []


def cpu_bf16_flags() -> list[str]:
    """The bf16 instruction sets the CPU reports: a subset of CPU_BF16_FLAGS, empty where /proc/cpuinfo is absent."""
    flags = set()
    for line in cpuinfo_lines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo_lines() if line.startswith("model name")), "")
    return name or platform.processor() or "CPU"


def has_fast_bf16(device) -> bool:
    """Whether bf16 products on `device` run on bf16 hardware (a GPU that has it, a CPU with bf16 instructions)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and bool(cpu_bf16_flags())


def bf16_capability(device) -> str:
    """One line for benchmark headers: the CPU (model, SIMD level, bf16 instructions) or the GPU, and its bf16."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, bf16 {'in hardware' if has_fast_bf16(device) else 'emulated'}"
    flags = cpu_bf16_flags()
    units = f"bf16 units ({', '.join(flags)})" if flags else "no bf16 units (bf16 is emulated, slower than float32)"
    return f"{cpu_model_name()}, {torch.backends.cpu.get_cpu_capability()}, {units}"


def resolve_mixed_precision(requested: str, device) -> str:
    """What runs on `device` for `--mixed-precision requested`: auto becomes bf16 or no; fp16 needs a GPU."""
    import torch

    if requested not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {requested!r}.")
    device = torch.device(device)
    if requested == "auto":
        return "bf16" if has_fast_bf16(device) else "no"
    if requested == "fp16" and device.type == "cpu":
        raise ValueError("mixed_precision='fp16' needs a CUDA GPU: a CPU has no fp16 autocast with loss scaling; use "
                         "auto, bf16 or no.")
    return requested


def autocast(precision: str, device):
    """The autocast context of a resolved precision ("no", "bf16" or "fp16") on `device`."""
    import torch

    if precision == "no":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


__all__ = ["MIXED_PRECISION", "autocast", "bf16_capability", "cpu_bf16_flags", "cpu_model_name", "has_fast_bf16",
           "resolve_mixed_precision"]
