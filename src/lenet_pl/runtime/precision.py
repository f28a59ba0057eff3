"""`precision=auto`: mixed bf16 where the hardware runs it fast (a GPU, or a CPU with bf16 units), else fp32."""

import torch


def cpu_bf16_units() -> list[str]:
    """This CPU's bf16 units as torch's kernels see them: "AMX", "AVX512_BF16", both, or none.

    oneDNN runs bf16 convolutions and matrix products on AMX tiles (Intel Xeon since Sapphire
    Rapids) or with AVX512_BF16 instructions (Intel Cooper Lake, AMD Zen 4 and later). Without
    either, bf16 is emulated: converted to fp32 and back around fp32 arithmetic.
    """
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()  # cpuinfo's CPUID flags (torch >= 2.6)
    return [name for key, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16")) if capabilities.get(key)]


def auto_precision(accelerator: str) -> str:
    """`precision=auto` (a resolver): mixed bf16 where the hardware runs it fast, else fp32.

    bf16-mixed on a CUDA GPU with bf16 (16-mixed on older ones) and on a CPU with bf16 units;
    32-true on any other CPU, where emulated bf16 is slower than fp32 (BENCHMARKS.md, "bf16").
    """
    if str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_bf16_units() else "32-true"
