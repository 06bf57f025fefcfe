/* gRDA's update on the CPU in one pass over memory (see cpu_kernel.py, which builds and calls this).
 *
 * For every element:  a <- a - lr * g;   w <- softshrink(a, tau)
 * softshrink(x, tau) = x - tau if x > tau, x + tau if x < -tau, else x * 0 + 0 (exact zeros, always +0.0: x * 0 is
 * -0.0 for negative x, and -0.0 + 0.0 = +0.0; NaN stays NaN, as in the reference formula).
 *
 * Why hand-written: the update is memory-bound. Fused, it reads a and g and writes a and w; but an ordinary store to
 * w first reads w's cache line into the cache (write-allocate), a fifth pass over memory, which is what a fused
 * torch.compile kernel pays (1.6x a plain SGD step). Streaming (non-temporal) stores write w without reading it.
 * They bypass the cache, so they are used only when the parameters are larger than the cache anyway.
 *
 * The accumulate is a fused multiply-add, fma(g, -lr, a), as ATen's add_(g, alpha=-lr) computes it on x86-64 with
 * AVX2/FMA, so the result is bit-identical to the eager path there. The AVX2 version is chosen at run time, so the
 * built library runs on any x86-64 CPU (a cluster's nodes may differ from the one that built it).
 */
#include <stddef.h>
#include <stdint.h>

/* GRDA_PORTABLE builds only the plain loop (tests use it to check the path other CPUs take). */
#if defined(__x86_64__) && !defined(GRDA_PORTABLE)
#define GRDA_AVX2 1
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    int64_t count;
    float *const *w;
    float *const *a;
    const float *const *g;
    const int64_t *numel;
    int64_t begin, end; /* this worker's range of the concatenated elements */
    float lr, tau;
    int streaming;
} Work;

static void update_generic(float *w, float *a, const float *g, int64_t n, float lr, float tau) {
    const float neg_lr = -lr;
    for (int64_t i = 0; i < n; i++) {
        const float x = a[i] + neg_lr * g[i];
        a[i] = x;
        w[i] = x > tau ? x - tau : (x < -tau ? x + tau : x * 0.0f + 0.0f);
    }
}

#ifdef GRDA_AVX2
__attribute__((target("avx2,fma"))) static inline void shrink1(float *w, float *a, const float *g, float neg_lr, float tau) {
    const float x = __builtin_fmaf(*g, neg_lr, *a);
    *a = x;
    *w = x > tau ? x - tau : (x < -tau ? x + tau : x * 0.0f + 0.0f);
}

__attribute__((target("avx2,fma"))) static void update_avx2(float *w, float *a, const float *g, int64_t n, float lr,
                                                            float tau, int streaming) {
    const float neg_lr = -lr;
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(w + i) & 31); i++) /* streaming stores need 32-byte aligned addresses */
        shrink1(w + i, a + i, g + i, neg_lr, tau);
    const __m256 vneg_lr = _mm256_set1_ps(neg_lr), vtau = _mm256_set1_ps(tau), vneg_tau = _mm256_set1_ps(-tau);
    const __m256 vzero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_fmadd_ps(_mm256_loadu_ps(g + i), vneg_lr, _mm256_loadu_ps(a + i));
        _mm256_storeu_ps(a + i, x);
        __m256 shrunk = _mm256_add_ps(_mm256_mul_ps(x, vzero), vzero); /* +0.0, or NaN */
        shrunk = _mm256_blendv_ps(shrunk, _mm256_sub_ps(x, vtau), _mm256_cmp_ps(x, vtau, _CMP_GT_OQ));
        shrunk = _mm256_blendv_ps(shrunk, _mm256_add_ps(x, vtau), _mm256_cmp_ps(x, vneg_tau, _CMP_LT_OQ));
        if (streaming)
            _mm256_stream_ps(w + i, shrunk);
        else
            _mm256_store_ps(w + i, shrunk);
    }
    for (; i < n; i++)
        shrink1(w + i, a + i, g + i, neg_lr, tau);
    if (streaming)
        _mm_sfence(); /* streaming stores are weakly ordered: make them visible before the step returns */
}

static int has_avx2_fma(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#endif

static void update_range(float *w, float *a, const float *g, int64_t n, float lr, float tau, int streaming) {
#ifdef GRDA_AVX2
    if (has_avx2_fma()) {
        update_avx2(w, a, g, n, lr, tau, streaming);
        return;
    }
#endif
    (void)streaming;
    update_generic(w, a, g, n, lr, tau);
}

static void run_work(const Work *work) {
    int64_t offset = 0; /* index of tensor t's first element in the concatenation */
    for (int64_t t = 0; t < work->count && offset < work->end; offset += work->numel[t], t++) {
        const int64_t lo = work->begin > offset ? work->begin - offset : 0;
        const int64_t hi = work->end < offset + work->numel[t] ? work->end - offset : work->numel[t];
        if (lo < hi)
            update_range(work->w[t] + lo, work->a[t] + lo, work->g[t] + lo, hi - lo, work->lr, work->tau, work->streaming);
    }
}

/* One gRDA step over `count` dense float32 tensors, split evenly over `threads` threads. Built with -fopenmp, the
 * threads are those of PyTorch's own OpenMP pool (the process already has libgomp.so.1 loaded, and the dynamic linker
 * resolves ours to it): threads of our own would compete with PyTorch's, which spin a while after each operation. */
void grda_update_f32(int64_t count, float *const *w, float *const *a, const float *const *g, const int64_t *numel,
                     float lr, float tau, int streaming, int threads) {
    int64_t total = 0;
    for (int64_t t = 0; t < count; t++)
        total += numel[t];
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int k = 0, n = 1;
#ifdef _OPENMP
        k = omp_get_thread_num();
        n = omp_get_num_threads();
#else
        (void)threads;
#endif
        /* shares end on 16-element (64-byte) boundaries, so that no cache line is written by two threads */
        Work work = {count, w, a, g, numel, (total * k / n) & ~(int64_t)15, (total * (k + 1) / n) & ~(int64_t)15,
                     lr, tau, streaming};
        if (k == n - 1)
            work.end = total;
        run_work(&work);
    }
}
