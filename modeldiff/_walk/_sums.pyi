# The C module modeldiff/_walk/_sums.c (optional: see tensors.py's _one_pass).
from typing import Any

# a and b: anything with the buffer protocol (numpy arrays, bytes, mmap slices).
def sums(a: Any, b: Any, kind: str, /) -> tuple[int, float, float, float, float] | None:
    """(changed, max |b - a|, sum a*a, sum d*d, sum a*d) in float64, d = b - a, for two
    buffers of float32 ('f'), float16 ('e') or bfloat16 ('b') values; None when a value is
    not finite."""

def avx2(on: bool | None = None, /) -> bool:
    """Whether sums uses its AVX2 kernels; with an argument, switch (tests only)."""
