/* C spellings shared by the kernels' headers (_row_loops.h, _skipgram.h,
   _arc_loss.h), defined once. */
#ifndef FASTGRAD_C_PORTABILITY_H
#define FASTGRAD_C_PORTABILITY_H

#if defined(_MSC_VER) && !defined(__cplusplus)
#define restrict __restrict  /* MSVC's C compiler spells it this way */
#endif

/* A function marked FASTGRAD_CLONES is compiled for AVX-512, AVX2 and plain x86-64
   and the best one is picked at load time (GCC function multiversioning, glibc
   x86-64: it needs ifunc, which musl lacks); a wheel built for every x86-64 then
   still uses the wide vectors of the CPU it runs on. Every marked function does the
   same operations in the same order in every version (no FMA contraction:
   -ffp-contract=off; reductions written out with a fixed number of partial sums), so
   the results do not depend on the CPU. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define FASTGRAD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTGRAD_CLONES
#endif

#endif
