"""The machine a benchmark ran on, for its report (times differ between CPU classes)."""
import os


def cpu_name() -> str:
    """e.g. "AMD EPYC, AVX2, 2 cores": the model name, the widest AVX and the core count."""
    with open("/proc/cpuinfo") as f:
        text = f.read()
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown CPU")
    isa = "AVX-512" if "avx512f" in text else "AVX2" if "avx2" in text else "no AVX2"
    return f"{name}, {isa}, {os.cpu_count()} cores"
