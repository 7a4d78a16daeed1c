/* modeldiff._walk._sums: the statistics of a weight change in one pass over the bytes.
 *
 * weight_diff needs, for every tensor pair whose bytes differ, five numbers: how many values
 * changed, max |b - a|, |a|^2, |d|^2 and a.d (d = b - a). In torch that is about eight passes
 * over each chunk (a copy into float64, the difference, three dot products, |d|, a count, a
 * max), each a separate call that lets go of the GIL and takes it back: three to four times
 * the cost of reading both files once. Here it is one pass, read where the bytes lie (a
 * leased mapping of the file, or the caller's buffer), with the GIL let go for the whole
 * chunk so two threads compare two tensors at once.
 *
 * Exactness: float32, float16 and bfloat16 values are exact in double, and so are the
 * difference of two of them (unless their exponents are more than 29 apart, where it rounds
 * like float64 does) and the product of two of them (48 significant bits at most), so every
 * term is what a float64 computation would give; the sums are kept in double, four or more
 * partial sums per quantity, like a BLAS dot product. Products of float32 values in double
 * can neither overflow nor underflow. A value that is not finite makes a sum not finite: the
 * caller then redoes the tensor on its general path, which handles NaN and infinities.
 *
 * This module is optional: modeldiff computes the same numbers in torch without it (see
 * _accumulate_fast in tensors.py), and the tests hold both to the same float64 reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Two lanes of double, the width every 64-bit CPU has (SSE2, NEON): GCC and Clang compile
 * these to one instruction each. (Four lanes on a CPU without AVX were 7x slower: emulated.) */
#if defined(__GNUC__) || defined(__clang__)
#define MD_VECTOR 1
typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2i __attribute__((vector_size(16)));
typedef float v2f __attribute__((vector_size(8)));
typedef uint16_t v2h __attribute__((vector_size(4)));
typedef uint32_t v2u __attribute__((vector_size(8)));
#endif

/* x86-64 CPUs with AVX2, FMA and F16C (nearly all since 2013) get kernels written with
 * their intrinsics, chosen at import (md_avx2); GCC's code for the portable vector loop
 * below was half as fast there. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MD_AVX2 1
#include <immintrin.h>
#endif

typedef struct {
    int64_t changed;
    double max_abs, aa, dd, ad;
} md_sums;

static inline float md_f32(const unsigned char *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

static inline float md_bf16(const unsigned char *p) {
    uint16_t h;
    uint32_t u;
    float v;
    memcpy(&h, p, 2);
    u = (uint32_t)h << 16;
    memcpy(&v, &u, 4);
    return v;
}

/* IEEE half to float, exactly: normal, subnormal, zero, infinity and NaN. */
static inline float md_f16(const unsigned char *p) {
    uint16_t h;
    uint32_t sign, exp, man, u;
    float v;
    memcpy(&h, p, 2);
    sign = (uint32_t)(h & 0x8000u) << 16;
    exp = (h >> 10) & 0x1fu;
    man = h & 0x3ffu;
    if (exp == 0) {
        v = (float)man * 5.9604644775390625e-8f; /* man * 2^-24: exact */
        memcpy(&u, &v, 4);
        u |= sign;
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    memcpy(&v, &u, 4);
    return v;
}

/* One element, on the scalar tail (and everywhere without vector extensions). */
#define MD_STEP(x, y)                                                           \
    do {                                                                        \
        double d_ = (y) - (x), ad_ = fabs(d_);                                  \
        s.changed += (d_ != 0.0);                                               \
        if (ad_ > s.max_abs) s.max_abs = ad_;                                   \
        s.aa += (x) * (x);                                                      \
        s.dd += d_ * d_;                                                        \
        s.ad += (x) * d_;                                                       \
    } while (0)

#ifdef MD_VECTOR
/* The loop over whole groups of two, for a loader that fills v2d x and y at element i. The
 * max of |d| keeps NaN out of the way: the caller discards everything when a sum is NaN. */
#define MD_VECTOR_LOOP(LOAD)                                                    \
    v2d aa = {0, 0}, dd = aa, ad = aa, mx = aa;                                 \
    v2d aa2 = aa, dd2 = aa, ad2 = aa, mx2 = aa;                                 \
    v2i cnt = {0, 0}, cnt2 = cnt;                                               \
    const v2i sign = {INT64_MAX, INT64_MAX};                                    \
    v2i gt;                                                                     \
    Py_ssize_t i = 0;                                                           \
    for (; i + 4 <= n; i += 4) {                                                \
        v2d x, y, x2, y2, d, d2, ab, ab2;                                       \
        v2i gt2;                                                                \
        LOAD(x, y, i);                                                          \
        LOAD(x2, y2, i + 2);                                                    \
        d = y - x;                                                              \
        d2 = y2 - x2;                                                           \
        cnt -= (d != 0.0);                                                      \
        cnt2 -= (d2 != 0.0);                                                    \
        ab = (v2d)((v2i)d & sign);                                              \
        ab2 = (v2d)((v2i)d2 & sign);                                            \
        gt = ab > mx;                                                           \
        mx = (v2d)(((v2i)ab & gt) | ((v2i)mx & ~gt));                           \
        gt2 = ab2 > mx2;                                                        \
        mx2 = (v2d)(((v2i)ab2 & gt2) | ((v2i)mx2 & ~gt2));                      \
        aa += x * x;                                                            \
        dd += d * d;                                                            \
        ad += x * d;                                                            \
        aa2 += x2 * x2;                                                         \
        dd2 += d2 * d2;                                                         \
        ad2 += x2 * d2;                                                         \
    }                                                                           \
    aa += aa2;                                                                  \
    dd += dd2;                                                                  \
    ad += ad2;                                                                  \
    cnt += cnt2;                                                                \
    gt = mx2 > mx;                                                              \
    mx = (v2d)(((v2i)mx2 & gt) | ((v2i)mx & ~gt));                              \
    for (int k = 0; k < 2; k++) {                                               \
        s.changed += cnt[k];                                                    \
        if (mx[k] > s.max_abs) s.max_abs = mx[k];                               \
        s.aa += aa[k];                                                          \
        s.dd += dd[k];                                                          \
        s.ad += ad[k];                                                          \
    }

#define MD_LOAD_F32(X, Y, I)                                                    \
    do {                                                                        \
        v2f fx_, fy_;                                                           \
        memcpy(&fx_, pa + 4 * (I), 8);                                          \
        memcpy(&fy_, pb + 4 * (I), 8);                                          \
        X = __builtin_convertvector(fx_, v2d);                                  \
        Y = __builtin_convertvector(fy_, v2d);                                  \
    } while (0)

#define MD_LOAD_BF16(X, Y, I)                                                   \
    do {                                                                        \
        v2h hx_, hy_;                                                           \
        v2u ux_, uy_;                                                           \
        memcpy(&hx_, pa + 2 * (I), 4);                                          \
        memcpy(&hy_, pb + 2 * (I), 4);                                          \
        ux_ = __builtin_convertvector(hx_, v2u) << 16;                          \
        uy_ = __builtin_convertvector(hy_, v2u) << 16;                          \
        X = __builtin_convertvector((v2f)ux_, v2d);                             \
        Y = __builtin_convertvector((v2f)uy_, v2d);                             \
    } while (0)

/* IEEE half to float on two lanes, without branches (the scalar md_f16, lane by lane):
 * exponent and mantissa moved into place and the exponent rebased; infinities and NaN get
 * the float's top exponent; subnormals are renormalised by subtracting 2^-14 in float. */
#define MD_HALF2(H, F)                                                          \
    do {                                                                        \
        const v2u top_ = {0x7c00u << 13, 0x7c00u << 13};                        \
        const v2f magic_ = {6.103515625e-05f, 6.103515625e-05f}; /* 2^-14 */    \
        v2u o_ = (H & 0x7fffu) << 13, e_ = o_ & top_, inf_, den_, sub_;         \
        v2f f_;                                                                 \
        o_ += (127u - 15u) << 23;                                               \
        inf_ = (v2u)(e_ == top_);                                               \
        den_ = (v2u)(e_ == 0u);                                                 \
        o_ += inf_ & ((128u - 16u) << 23);                                      \
        f_ = (v2f)(o_ + (1u << 23)) - magic_;                                   \
        sub_ = (v2u)f_;                                                         \
        o_ = (den_ & sub_) | (~den_ & o_);                                      \
        o_ |= (H & 0x8000u) << 16;                                              \
        F = (v2f)o_;                                                            \
    } while (0)

#define MD_LOAD_F16(X, Y, I)                                                    \
    do {                                                                        \
        v2h hx_, hy_;                                                           \
        v2u ux_, uy_;                                                           \
        v2f fx_, fy_;                                                           \
        memcpy(&hx_, pa + 2 * (I), 4);                                          \
        memcpy(&hy_, pb + 2 * (I), 4);                                          \
        ux_ = __builtin_convertvector(hx_, v2u);                                \
        uy_ = __builtin_convertvector(hy_, v2u);                                \
        MD_HALF2(ux_, fx_);                                                     \
        MD_HALF2(uy_, fy_);                                                     \
        X = __builtin_convertvector(fx_, v2d);                                  \
        Y = __builtin_convertvector(fy_, v2d);                                  \
    } while (0)
#endif

/* The portable kernels: whole groups through the vector loop where the compiler has vector
 * extensions, the rest (or everything) one value at a time. */
#ifdef MD_VECTOR
#define MD_PORTABLE_LOOP(LOAD) MD_VECTOR_LOOP(LOAD)
#else
#define MD_PORTABLE_LOOP(LOAD) Py_ssize_t i = 0;
#endif
#define MD_PORTABLE_KERNEL(NAME, SIZE, LOAD, SCALAR)                            \
    static md_sums NAME(const unsigned char *pa, const unsigned char *pb,       \
                        Py_ssize_t n) {                                         \
        md_sums s = {0, 0.0, 0.0, 0.0, 0.0};                                    \
        MD_PORTABLE_LOOP(LOAD)                                                  \
        for (; i < n; i++) {                                                    \
            double x = SCALAR(pa + SIZE * i), y = SCALAR(pb + SIZE * i);        \
            MD_STEP(x, y);                                                      \
        }                                                                       \
        return s;                                                               \
    }

MD_PORTABLE_KERNEL(md_sums_f32, 4, MD_LOAD_F32, md_f32)
MD_PORTABLE_KERNEL(md_sums_bf16, 2, MD_LOAD_BF16, md_bf16)
MD_PORTABLE_KERNEL(md_sums_f16, 2, MD_LOAD_F16, md_f16)

#ifdef MD_AVX2
static int md_avx2 = 0;

/* Eight values a step, in two independent groups of four (so no sum waits on the one
 * before it); LOAD fills __m256d X with the four values at element I of p. */
#define MD_AVX2_KERNEL(NAME, SIZE, LOAD, SCALAR)                                \
    __attribute__((target("avx2,fma,f16c"))) static md_sums NAME(               \
        const unsigned char *pa, const unsigned char *pb, Py_ssize_t n) {       \
        md_sums s = {0, 0.0, 0.0, 0.0, 0.0};                                    \
        const __m256d zero = _mm256_setzero_pd();                               \
        const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX)); \
        __m256d aa0 = zero, aa1 = zero, dd0 = zero, dd1 = zero;                 \
        __m256d ad0 = zero, ad1 = zero, mx0 = zero, mx1 = zero;                 \
        __m256i c0 = _mm256_setzero_si256(), c1 = c0;                           \
        double lanes[4];                                                        \
        int64_t counts[4];                                                      \
        Py_ssize_t i = 0;                                                       \
        for (; i + 8 <= n; i += 8) {                                            \
            __m256d x0, x1, y0, y1, d0, d1;                                     \
            LOAD(x0, pa, i);                                                    \
            LOAD(x1, pa, i + 4);                                                \
            LOAD(y0, pb, i);                                                    \
            LOAD(y1, pb, i + 4);                                                \
            d0 = _mm256_sub_pd(y0, x0);                                         \
            d1 = _mm256_sub_pd(y1, x1);                                         \
            c0 = _mm256_sub_epi64(c0, _mm256_castpd_si256(                      \
                     _mm256_cmp_pd(d0, zero, _CMP_NEQ_UQ)));                    \
            c1 = _mm256_sub_epi64(c1, _mm256_castpd_si256(                      \
                     _mm256_cmp_pd(d1, zero, _CMP_NEQ_UQ)));                    \
            mx0 = _mm256_max_pd(mx0, _mm256_and_pd(d0, abs_mask));              \
            mx1 = _mm256_max_pd(mx1, _mm256_and_pd(d1, abs_mask));              \
            aa0 = _mm256_fmadd_pd(x0, x0, aa0);                                 \
            aa1 = _mm256_fmadd_pd(x1, x1, aa1);                                 \
            dd0 = _mm256_fmadd_pd(d0, d0, dd0);                                 \
            dd1 = _mm256_fmadd_pd(d1, d1, dd1);                                 \
            ad0 = _mm256_fmadd_pd(x0, d0, ad0);                                 \
            ad1 = _mm256_fmadd_pd(x1, d1, ad1);                                 \
        }                                                                       \
        _mm256_storeu_si256((__m256i *)counts, _mm256_add_epi64(c0, c1));       \
        for (int k = 0; k < 4; k++) s.changed += counts[k];                     \
        _mm256_storeu_pd(lanes, _mm256_max_pd(mx0, mx1));                       \
        for (int k = 0; k < 4; k++)                                             \
            if (lanes[k] > s.max_abs) s.max_abs = lanes[k];                     \
        _mm256_storeu_pd(lanes, _mm256_add_pd(aa0, aa1));                       \
        s.aa = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);                   \
        _mm256_storeu_pd(lanes, _mm256_add_pd(dd0, dd1));                       \
        s.dd = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);                   \
        _mm256_storeu_pd(lanes, _mm256_add_pd(ad0, ad1));                       \
        s.ad = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);                   \
        for (; i < n; i++) {                                                    \
            double x = SCALAR(pa + SIZE * i), y = SCALAR(pb + SIZE * i);        \
            MD_STEP(x, y);                                                      \
        }                                                                       \
        return s;                                                               \
    }

#define MD_AVX2_F32(X, P, I) X = _mm256_cvtps_pd(_mm_loadu_ps((const float *)((P) + 4 * (I))))
#define MD_AVX2_BF16(X, P, I)                                                   \
    X = _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(                        \
        _mm_cvtepu16_epi32(_mm_loadl_epi64((const __m128i *)((P) + 2 * (I)))), 16)))
#define MD_AVX2_F16(X, P, I)                                                    \
    X = _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)((P) + 2 * (I)))))

MD_AVX2_KERNEL(md_sums_f32_avx2, 4, MD_AVX2_F32, md_f32)
MD_AVX2_KERNEL(md_sums_bf16_avx2, 2, MD_AVX2_BF16, md_bf16)
MD_AVX2_KERNEL(md_sums_f16_avx2, 2, MD_AVX2_F16, md_f16)
#endif

PyDoc_STRVAR(sums_doc,
"sums(a, b, kind, /) -> (changed, max_abs, aa, dd, ad) or None\n\n"
"a and b: buffers of the same length holding values of one dtype, kind 'f' (float32),\n"
"'e' (float16) or 'b' (bfloat16). With d = b - a, in float64: the number of values that\n"
"differ, max |d|, sum a*a, sum d*d and sum a*d; None when a value is not finite.");

static PyObject *md_sums_py(PyObject *self, PyObject *args) {
    Py_buffer va, vb;
    int kind;
    Py_ssize_t size;
    md_sums s;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*C:sums", &va, &vb, &kind))
        return NULL;
    size = kind == 'f' ? 4 : 2;
    if (kind != 'f' && kind != 'e' && kind != 'b') {
        PyErr_Format(PyExc_ValueError, "sums: kind must be 'f', 'e' or 'b', not %c", kind);
        goto fail;
    }
    if (va.len != vb.len || va.len % size != 0) {
        PyErr_Format(PyExc_ValueError,
                     "sums: buffers of %zd and %zd bytes are not two runs of %zd-byte values",
                     va.len, vb.len, size);
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
#ifdef MD_AVX2
    if (md_avx2) {
        const unsigned char *a = va.buf, *b = vb.buf;
        s = kind == 'f' ? md_sums_f32_avx2(a, b, va.len / 4)
            : kind == 'b' ? md_sums_bf16_avx2(a, b, va.len / 2)
            : md_sums_f16_avx2(a, b, va.len / 2);
    } else
#endif
    if (kind == 'f')
        s = md_sums_f32((const unsigned char *)va.buf, (const unsigned char *)vb.buf,
                        va.len / 4);
    else if (kind == 'b')
        s = md_sums_bf16((const unsigned char *)va.buf, (const unsigned char *)vb.buf,
                         va.len / 2);
    else
        s = md_sums_f16((const unsigned char *)va.buf, (const unsigned char *)vb.buf,
                        va.len / 2);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    if (!(isfinite(s.aa) && isfinite(s.dd) && isfinite(s.ad)))
        Py_RETURN_NONE;
    return Py_BuildValue("Ldddd", (long long)s.changed, s.max_abs, s.aa, s.dd, s.ad);
fail:
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    return NULL;
}

PyDoc_STRVAR(avx2_doc,
"avx2(on=None, /) -> bool\n\n"
"Whether sums uses the AVX2 kernels; with an argument, use them or not (only where the CPU\n"
"has AVX2, FMA and F16C) and return the previous setting. For tests of the portable loop.");

static PyObject *md_avx2_py(PyObject *self, PyObject *args) {
    PyObject *on = Py_None;
    int before = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "|O:avx2", &on))
        return NULL;
#ifdef MD_AVX2
    before = md_avx2;
    if (on != Py_None) {
        int want = PyObject_IsTrue(on);
        if (want < 0)
            return NULL;
        md_avx2 = want && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  __builtin_cpu_supports("f16c");
    }
#endif
    return PyBool_FromLong(before);
}

static PyMethodDef md_methods[] = {
    {"sums", md_sums_py, METH_VARARGS, sums_doc},
    {"avx2", md_avx2_py, METH_VARARGS, avx2_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef md_module = {
    PyModuleDef_HEAD_INIT, "_sums",
    "One-pass statistics of a weight change (optional accelerator; see tensors.py).", -1,
    md_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sums(void) {
#ifdef MD_AVX2
    __builtin_cpu_init();
    md_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("f16c");
#endif
    return PyModule_Create(&md_module);
}
