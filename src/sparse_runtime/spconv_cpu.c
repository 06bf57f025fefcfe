/* Sparse-weight x dense-activation products for inference on the CPU (see src/sparse_runtime/kernel.py, which builds
 * and calls this).
 *
 * One routine covers Linear layers and convolutions of any kernel size, stride and dilation (groups = 1), with no
 * im2col: the weights are stored per output channel o as (value, offset) pairs, where the offset says where that
 * weight's input sits in a per-sample input buffer, so that
 *
 *     grid[o, l] = sum_j  val[j] * x[n * xs + off[j] + l]        for l = 0 .. L-1, j in row o
 *
 * For a convolution the buffer holds the zero-padded input split into its stride x stride phases (polyphase), each
 * phase a (C, Hq, Wq) image; then tap (c, kh, kw) of output pixel (r, q) reads phase (kh*d % s, kw*d % s) at
 * (r + kh*d / s, q + kw*d / s), i.e. offset(c, kh, kw) + r*Wq + q: every weight reads one contiguous run of the
 * buffer, and the output grid has row stride G = Wq of which the first Q columns are kept (the rest is dropped when
 * storing). A Linear layer is the case of one phase, x transposed to (K, N) and L = N.
 *
 * The columns are processed in chunks of up to 64 floats held in 8 AVX2 registers; each thread walks a contiguous
 * range of (sample, chunk, output channel) units, so a chunk's inputs stay in cache while every output channel
 * reads them. L = 1 (a Linear layer at batch 1) is a sparse matrix-vector product. The AVX2 code is chosen at run
 * time; other CPUs take the plain loops.
 *
 * Built with -fopenmp, the threads are those of PyTorch's own OpenMP pool (the process already has libgomp loaded
 * and the dynamic linker resolves ours to it).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && !defined(SPCONV_PORTABLE)
#define SPCONV_AVX2 1
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define CHUNK 64
#define SERIAL_WORK 32768

typedef struct {
    int64_t N, O, L;          /* samples, output channels (rows), grid columns per sample */
    const int32_t *rowptr;    /* O + 1 */
    const int32_t *off;       /* nnz: offsets into a sample's input buffer */
    const float *val;         /* nnz */
    const float *bias;        /* O or NULL */
    const float *x;           /* input buffers, sample n at x + n * xs */
    int64_t xs;
    float *y;                 /* output: y[n * ys + o * ocs + (r * Q + q) * ps] for grid column l = r * G + q, q < Q */
    int64_t ys, ocs, ps, G, Q;
    int relu;
} Problem;

/* Store one chunk's accumulated columns [l0, l0 + w) of output channel o, dropping grid columns q >= Q. */
static inline void store_chunk(const Problem *p, float *yo, const float *acc, int64_t l0, int64_t w, float b) {
    int64_t r = l0 / p->G, q = l0 - r * p->G;
    for (int64_t i = 0; i < w; i++) {
        if (q < p->Q) {
            float v = acc[i] + b;
            if (p->relu && v < 0.0f) v = 0.0f;
            yo[(r * p->Q + q) * p->ps] = v;
        }
        if (++q == p->G) {
            q = 0;
            r++;
        }
    }
}

static void chunk_generic(const Problem *p, int64_t n, int64_t o, int64_t l0, int64_t w) {
    float acc[CHUNK];
    memset(acc, 0, sizeof(acc));
    const float *xn = p->x + n * p->xs + l0;
    for (int32_t j = p->rowptr[o]; j < p->rowptr[o + 1]; j++) {
        const float v = p->val[j];
        const float *s = xn + p->off[j];
        for (int64_t i = 0; i < w; i++) acc[i] += v * s[i];
    }
    store_chunk(p, p->y + n * p->ys + o * p->ocs, acc, l0, w, p->bias ? p->bias[o] : 0.0f);
}

static void spmv_generic(const Problem *p, int64_t n, int64_t o) {
    const float *xn = p->x + n * p->xs;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int32_t j = p->rowptr[o], end = p->rowptr[o + 1];
    for (; j + 4 <= end; j += 4) {
        s0 += p->val[j] * xn[p->off[j]];
        s1 += p->val[j + 1] * xn[p->off[j + 1]];
        s2 += p->val[j + 2] * xn[p->off[j + 2]];
        s3 += p->val[j + 3] * xn[p->off[j + 3]];
    }
    for (; j < end; j++) s0 += p->val[j] * xn[p->off[j]];
    float acc = (s0 + s1) + (s2 + s3);
    store_chunk(p, p->y + n * p->ys + o * p->ocs, &acc, 0, 1, p->bias ? p->bias[o] : 0.0f);
}

#ifdef SPCONV_AVX2
/* store_chunk for contiguous output rows (ps = 1): each grid row's kept columns with vector stores. */
__attribute__((target("avx2,fma"))) static void store_rows_avx2(const Problem *p, float *yo, const float *acc,
                                                               int64_t l0, int64_t w, float b) {
    const __m256 bv = _mm256_set1_ps(b), zero = _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int64_t r = l0 / p->G, q = l0 - r * p->G, i = 0;
    while (i < w) {
        int64_t seg = p->G - q < w - i ? p->G - q : w - i;
        int64_t valid = p->Q - q < seg ? p->Q - q : seg;
        float *dst = yo + r * p->Q + q;
        const float *src = acc + i;
        for (int64_t k = 0; k < valid; k += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(src + k), bv); /* acc has 8 floats of room past w */
            if (p->relu) v = _mm256_max_ps(zero, v);
            if (k + 8 <= valid)
                _mm256_storeu_ps(dst + k, v);
            else
                _mm256_maskstore_ps(dst + k, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(valid - k)), lane), v);
        }
        i += seg;
        r++;
        q = 0;
    }
}

/* V full-or-masked vectors of 8 columns; the last one is loaded under `mask`. */
#define DEFINE_CHUNK(V)                                                                                              \
    __attribute__((target("avx2,fma"))) static void chunk_avx2_##V(const Problem *p, int64_t n, int64_t o,            \
                                                                   int64_t l0, int64_t w) {                           \
        __m256 acc[V];                                                                                               \
        for (int k = 0; k < V; k++) acc[k] = _mm256_setzero_ps();                                                     \
        const int64_t tail = w - 8 * (V - 1);                                                                        \
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                                            \
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)tail), lane);                                \
        const float *xn = p->x + n * p->xs + l0;                                                                     \
        const int32_t *off = p->off;                                                                                 \
        const float *val = p->val;                                                                                   \
        for (int32_t j = p->rowptr[o], end = p->rowptr[o + 1]; j < end; j++) {                                      \
            const __m256 v = _mm256_set1_ps(val[j]);                                                                 \
            const float *s = xn + off[j];                                                                            \
            for (int k = 0; k < V - 1; k++) acc[k] = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 8 * k), acc[k]);         \
            acc[V - 1] = _mm256_fmadd_ps(v, _mm256_maskload_ps(s + 8 * (V - 1), mask), acc[V - 1]);                  \
        }                                                                                                            \
        float *yo = p->y + n * p->ys + o * p->ocs;                                                                   \
        const float b = p->bias ? p->bias[o] : 0.0f;                                                                 \
        if (p->G == p->Q && p->ps == 1) { /* no columns to drop: store straight */                                 \
            const __m256 bv = _mm256_set1_ps(b), zero = _mm256_setzero_ps();                                        \
            for (int k = 0; k < V; k++) {                                                                            \
                __m256 r = _mm256_add_ps(acc[k], bv);                                                                \
                if (p->relu) r = _mm256_max_ps(zero, r); /* NaN stays NaN, as in torch.relu */                                                             \
                if (k < V - 1)                                                                                       \
                    _mm256_storeu_ps(yo + l0 + 8 * k, r);                                                            \
                else                                                                                                 \
                    _mm256_maskstore_ps(yo + l0 + 8 * k, mask, r);                                                   \
            }                                                                                                        \
        } else {                                                                                                     \
            float tmp[8 * V + 8];                                                                                      \
            for (int k = 0; k < V; k++) _mm256_storeu_ps(tmp + 8 * k, acc[k]);                                       \
            if (p->ps == 1)                                                                                          \
                store_rows_avx2(p, yo, tmp, l0, w, b);                                                               \
            else                                                                                                     \
                store_chunk(p, yo, tmp, l0, w, b);                                                                   \
        }                                                                                                            \
    }
/* Unmasked loads of full vectors (when the chunk is whole): the common case, a little faster. */
__attribute__((target("avx2,fma"))) static void chunk_avx2_full(const Problem *p, int64_t n, int64_t o, int64_t l0) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const float *xn = p->x + n * p->xs + l0;
    const int32_t *off = p->off;
    const float *val = p->val;
    for (int32_t j = p->rowptr[o], end = p->rowptr[o + 1]; j < end; j++) {
        const __m256 v = _mm256_set1_ps(val[j]);
        const float *s = xn + off[j];
        a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 8), a1);
        a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 16), a2);
        a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 24), a3);
        a4 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 32), a4);
        a5 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 40), a5);
        a6 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 48), a6);
        a7 = _mm256_fmadd_ps(v, _mm256_loadu_ps(s + 56), a7);
    }
    float *yo = p->y + n * p->ys + o * p->ocs;
    const float b = p->bias ? p->bias[o] : 0.0f;
    __m256 acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    if (p->G == p->Q && p->ps == 1) {
        const __m256 bv = _mm256_set1_ps(b), zero = _mm256_setzero_ps();
        for (int k = 0; k < 8; k++) {
            __m256 r = _mm256_add_ps(acc[k], bv);
            if (p->relu) r = _mm256_max_ps(zero, r); /* NaN stays NaN, as in torch.relu */
            _mm256_storeu_ps(yo + l0 + 8 * k, r);
        }
    } else {
        float tmp[CHUNK + 8]; /* + 8: store_rows_avx2 loads whole vectors */
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(tmp + 8 * k, acc[k]);
        if (p->ps == 1)
            store_rows_avx2(p, yo, tmp, l0, CHUNK, b);
        else
            store_chunk(p, yo, tmp, l0, CHUNK, b);
    }
}
DEFINE_CHUNK(1)
DEFINE_CHUNK(2)
DEFINE_CHUNK(3)
DEFINE_CHUNK(4)
DEFINE_CHUNK(5)
DEFINE_CHUNK(6)
DEFINE_CHUNK(7)
DEFINE_CHUNK(8)

__attribute__((target("avx2,fma"))) static void spmv_avx2(const Problem *p, int64_t n, int64_t o) {
    const float *xn = p->x + n * p->xs;
    int32_t j = p->rowptr[o], end = p->rowptr[o + 1];
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; j + 16 <= end; j += 16) {
        __m256i i0 = _mm256_loadu_si256((const __m256i *)(p->off + j));
        __m256i i1 = _mm256_loadu_si256((const __m256i *)(p->off + j + 8));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p->val + j), _mm256_i32gather_ps(xn, i0, 4), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p->val + j + 8), _mm256_i32gather_ps(xn, i1, 4), a1);
    }
    a0 = _mm256_add_ps(a0, a1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float acc = _mm_cvtss_f32(h);
    for (; j < end; j++) acc += p->val[j] * xn[p->off[j]];
    store_chunk(p, p->y + n * p->ys + o * p->ocs, &acc, 0, 1, p->bias ? p->bias[o] : 0.0f);
}

static int has_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#endif

static void run_units(const Problem *p, int64_t begin, int64_t end, int avx2) {
    const int64_t nchunks = (p->L + CHUNK - 1) / CHUNK;
    for (int64_t u = begin; u < end; u++) {
        const int64_t o = u % p->O;
        const int64_t c = (u / p->O) % nchunks;
        const int64_t n = u / (p->O * nchunks);
        const int64_t l0 = c * CHUNK;
        const int64_t w = p->L - l0 < CHUNK ? p->L - l0 : CHUNK;
#ifdef SPCONV_AVX2
        if (avx2) {
            if (p->L == 1) {
                spmv_avx2(p, n, o);
            } else if (w == CHUNK) {
                chunk_avx2_full(p, n, o, l0);
            } else {
                switch ((w + 7) / 8) {
                case 1: chunk_avx2_1(p, n, o, l0, w); break;
                case 2: chunk_avx2_2(p, n, o, l0, w); break;
                case 3: chunk_avx2_3(p, n, o, l0, w); break;
                case 4: chunk_avx2_4(p, n, o, l0, w); break;
                case 5: chunk_avx2_5(p, n, o, l0, w); break;
                case 6: chunk_avx2_6(p, n, o, l0, w); break;
                case 7: chunk_avx2_7(p, n, o, l0, w); break;
                default: chunk_avx2_8(p, n, o, l0, w); break;
                }
            }
            continue;
        }
#endif
        (void)avx2;
        if (p->L == 1)
            spmv_generic(p, n, o);
        else
            chunk_generic(p, n, o, l0, w);
    }
}

/* The product described at the top, split evenly over `threads` threads. Returns 0. */
int spconv_f32(int64_t N, int64_t O, int64_t L, const int32_t *rowptr, const int32_t *off, const float *val,
               const float *bias, const float *x, int64_t xs, float *y, int64_t ys, int64_t ocs, int64_t ps, int64_t G,
               int64_t Q, int relu, int threads) {
    Problem p = {N, O, L, rowptr, off, val, bias, x, xs, y, ys, ocs, ps, G, Q, relu};
    int avx2 = 0;
#ifdef SPCONV_AVX2
    avx2 = has_avx2();
#endif
    const int64_t units = N * ((L + CHUNK - 1) / CHUNK) * O;
    if (units <= 0) return 0;
    /* Multiply-adds plus stores: below ~10 microseconds of work, waking a second thread costs more than it saves. */
    const int64_t work = N * L * ((int64_t)rowptr[O] + O);
    if (threads <= 1 || work < SERIAL_WORK) {
        run_units(&p, 0, units, avx2);
        return 0;
    }
#pragma omp parallel num_threads(threads)
    {
        int64_t k = 0, t = 1;
#ifdef _OPENMP
        k = omp_get_thread_num();
        t = omp_get_num_threads();
#endif
        run_units(&p, units * k / t, units * (k + 1) / t, avx2);
    }
    return 0;
}

/* Max pooling (dilation 1, floor mode) of `planes` (H, W) images into (Ho, Wo): window kh x kw, stride sh x sw,
 * padding ph x pw (positions outside the image are skipped, as PyTorch's -inf padding). Separable: for each output
 * row, the column-wise max of its kh input rows, then the max over kw of that row (AVX2 for both where available;
 * the common 2-wide, stride-2 horizontal step de-interleaves even and odd columns). A NaN in a window gives NaN, as
 * in torch. The planes are split over `threads` threads. Returns 0, or 1 when W is too wide for the row buffer. */
#define POOL_MAX_W 4096

static inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

static void pool_rows_generic(float *row, const float *xr, int64_t W) {
    for (int64_t c = 0; c < W; c++) row[c] = max_nan(row[c], xr[c]);
}

static void pool_cols_generic(const float *row, float *out, int64_t q0, int64_t Wo, int64_t W, int64_t kw,
                                 int64_t sw, int64_t pw) {
    for (int64_t q = q0; q < Wo; q++) {
        int64_t j0 = q * sw - pw, j1 = j0 + kw;
        if (j0 < 0) j0 = 0;
        if (j1 > W) j1 = W;
        float m = row[j0];
        for (int64_t j = j0 + 1; j < j1; j++) m = max_nan(m, row[j]);
        out[q] = m;
    }
}

#ifdef SPCONV_AVX2
/* max(m, v) with a NaN in v (or m) kept: vmaxps returns its second operand when either is NaN. */
__attribute__((target("avx2"))) static inline __m256 max_nan8(__m256 m, __m256 v) {
    __m256 r = _mm256_max_ps(v, m);
    return _mm256_blendv_ps(r, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

__attribute__((target("avx2"))) static inline __m256i tail_mask(int64_t n) { /* the first n (< 8) lanes */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* row[c] <- max(row[c], xr[c]) for c < W (row has 16 floats of room past W; xr is read only below W). */
__attribute__((target("avx2"))) static inline void pool_rows_avx2(float *row, const float *xr, int64_t W) {
    int64_t c = 0;
    for (; c + 8 <= W; c += 8) _mm256_storeu_ps(row + c, max_nan8(_mm256_loadu_ps(row + c), _mm256_loadu_ps(xr + c)));
    if (c < W) {
        __m256i m = tail_mask(W - c);
        _mm256_maskstore_ps(row + c, m, max_nan8(_mm256_loadu_ps(row + c), _mm256_maskload_ps(xr + c, m)));
    }
}

/* kw = sw = 2, pw = 0: out[q] = max(row[2q], row[2q + 1]) for q < Wo, 8 outputs per step (reads up to 16 floats
 * past 2 * Wo, inside row's room; the lanes past Wo are not stored). */
__attribute__((target("avx2"))) static inline void pool_cols_2x2_avx2(const float *row, float *out, int64_t Wo) {
    for (int64_t q = 0; q < Wo; q += 8) {
        __m256 a = _mm256_loadu_ps(row + 2 * q), b = _mm256_loadu_ps(row + 2 * q + 8);
        __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)); /* a0 a2 b0 b2 | a4 a6 b4 b6 */
        __m256 odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        __m256 m = max_nan8(even, odd);
        m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), _MM_SHUFFLE(3, 1, 2, 0)));
        if (q + 8 <= Wo)
            _mm256_storeu_ps(out + q, m);
        else
            _mm256_maskstore_ps(out + q, tail_mask(Wo - q), m);
    }
}
#endif

/* One plane; the row buffer `row` has POOL_MAX_W + 16 floats. */
static void pool_plane_generic(const float *xp, float *yp, float *row, int64_t H, int64_t W, int64_t kh, int64_t kw,
                               int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t Ho, int64_t Wo) {
    for (int64_t r = 0; r < Ho; r++) {
        int64_t i0 = r * sh - ph, i1 = i0 + kh;
        if (i0 < 0) i0 = 0;
        if (i1 > H) i1 = H;
        memcpy(row, xp + i0 * W, (size_t)W * sizeof(float));
        for (int64_t i = i0 + 1; i < i1; i++) pool_rows_generic(row, xp + i * W, W);
        pool_cols_generic(row, yp + r * Wo, 0, Wo, W, kw, sw, pw);
    }
}

#ifdef SPCONV_AVX2
/* The same with the vector steps inlined (one target-specific function, so that they can be). */
__attribute__((target("avx2"))) static void pool_plane_avx2(const float *xp, float *yp, float *row, int64_t H,
                                                            int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                                            int64_t ph, int64_t pw, int64_t Ho, int64_t Wo) {
    const int two = kw == 2 && sw == 2 && pw == 0;
    for (int64_t r = 0; r < Ho; r++) {
        int64_t i0 = r * sh - ph, i1 = i0 + kh;
        if (i0 < 0) i0 = 0;
        if (i1 > H) i1 = H;
        const float *src = xp + i0 * W;
        if (i1 - i0 == 1) {
            memcpy(row, src, (size_t)W * sizeof(float));
        } else { /* the first two rows in one pass, then the others */
            int64_t c = 0;
            for (; c + 8 <= W; c += 8)
                _mm256_storeu_ps(row + c, max_nan8(_mm256_loadu_ps(src + c), _mm256_loadu_ps(src + W + c)));
            if (c < W) {
                __m256i m = tail_mask(W - c);
                _mm256_maskstore_ps(row + c, m, max_nan8(_mm256_maskload_ps(src + c, m), _mm256_maskload_ps(src + W + c, m)));
            }
            for (int64_t i = i0 + 2; i < i1; i++) pool_rows_avx2(row, xp + i * W, W);
        }
        if (two)
            pool_cols_2x2_avx2(row, yp + r * Wo, Wo);
        else
            pool_cols_generic(row, yp + r * Wo, 0, Wo, W, kw, sw, pw);
    }
}
#endif

int maxpool_f32(int64_t planes, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                int64_t pw, const float *x, float *y, int64_t Ho, int64_t Wo, int threads) {
    if (W > POOL_MAX_W) return 1;
    int avx2 = 0;
#ifdef SPCONV_AVX2
    avx2 = has_avx2();
#endif
#pragma omp parallel for num_threads(threads) if (threads > 1 && planes * H * W >= 65536) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        float row[POOL_MAX_W + 16];
#ifdef SPCONV_AVX2
        if (avx2) {
            pool_plane_avx2(x + pl * H * W, y + pl * Ho * Wo, row, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);
            continue;
        }
#endif
        pool_plane_generic(x + pl * H * W, y + pl * Ho * Wo, row, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);
    }
    (void)avx2;
    return 0;
}

/* 1 when the AVX2 path is in use (for the record). */
int spconv_uses_avx2(void) {
#ifdef SPCONV_AVX2
    return has_avx2();
#else
    return 0;
#endif
}
