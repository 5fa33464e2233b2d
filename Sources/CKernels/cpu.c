#include "ckernels.h"
#include <cpuid.h>
#include <string.h>

gk_cpu_features gk_detect_cpu(void) {
    gk_cpu_features f = {0, 0, 0, 0};
    __builtin_cpu_init();
    f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                && __builtin_cpu_supports("avx512vl");
    f.f16c = __builtin_cpu_supports("f16c");
    // AVX512_BF16: CPUID leaf 7 subleaf 1, EAX bit 5.
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (f.avx512f && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = (a >> 5) & 1;
    return f;
}
