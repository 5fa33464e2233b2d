#pragma once
#include <stddef.h>
#include <stdint.h>

/// CPU features that select kernels at run time (never at build time: the next machine differs).
typedef struct {
    int avx2_fma;
    int avx512f;
    int avx512bf16;
    int f16c;
} gk_cpu_features;

gk_cpu_features gk_detect_cpu(void);
/// Name of the kernel family chosen for this CPU ("avx512bf16", "avx512", "avx2", "scalar").
const char *gk_kernel_name(void);
