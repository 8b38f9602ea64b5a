/* Reading the factorised (TensoRF) and dense grids at many points, without gradients: the
 * arithmetic of nerf/fields/grids.py (TensoRFVM.forward, DenseGrid.forward) in one pass per point.
 * Built and loaded by nerf/render/native.py; all arrays float32, contiguous. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define MAX_THREADS 64

typedef struct {
    const float *x, *a, *b, *lo, *size;
    float *out;
    int64_t n0, n1;
    int r, c;
} job_t;

/* Lower vertex and fraction of a unit coordinate on an r-vertex axis (grids.py _vertex_linear). */
static inline int vertex(float u, int r, float *f) {
    float pos = u * (float)(r - 1);
    float i0 = floorf(pos);
    if (i0 > (float)(r - 2)) i0 = (float)(r - 2);
    *f = pos - i0;
    return (int)i0;
}

static inline void unit(const job_t *j, int64_t p, float u[3]) {
    for (int a = 0; a < 3; ++a) {
        float v = (j->x[p * 3 + a] - j->lo[a]) / j->size[a];
        u[a] = v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
    }
}

/* TensoRF: planes (3, r, r, c) over axis pairs (0,1) (0,2) (1,2), rows by the second axis;
 * lines (3, r, c) along axes 2, 1, 0; out (n, 3c) = plane * line per factor. */
static void *tensorf_run(void *arg) {
    static const int PA[3] = {0, 0, 1}, PB[3] = {1, 2, 2}, LW[3] = {2, 1, 0};
    const job_t *j = (const job_t *)arg;
    const int r = j->r, c = j->c;
    for (int64_t p = j->n0; p < j->n1; ++p) {
        float u[3];
        unit(j, p, u);
        float *o = j->out + p * 3 * c;
        for (int m = 0; m < 3; ++m) {
            float fa, fb, fw;
            int ia = vertex(u[PA[m]], r, &fa), ib = vertex(u[PB[m]], r, &fb), iw = vertex(u[LW[m]], r, &fw);
            const float *p00 = j->a + ((int64_t)m * r * r + (int64_t)ib * r + ia) * c;
            const float *p01 = p00 + c, *p10 = p00 + (int64_t)r * c, *p11 = p10 + c;
            const float *l0 = j->b + ((int64_t)m * r + iw) * c, *l1 = l0 + c;
            const float w00 = (1 - fa) * (1 - fb), w01 = fa * (1 - fb), w10 = (1 - fa) * fb, w11 = fa * fb;
            const float v0 = 1 - fw, v1 = fw;
            float *om = o + m * c;
            for (int k = 0; k < c; ++k)
                om[k] = (w00 * p00[k] + w01 * p01[k] + w10 * p10[k] + w11 * p11[k]) * (v0 * l0[k] + v1 * l1[k]);
        }
    }
    return 0;
}

/* Dense grid (r, r, r, c) indexed (z, y, x); out (n, c) trilinear. */
static void *dense_run(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int r = j->r, c = j->c;
    const int64_t sy = (int64_t)r * c, sz = (int64_t)r * r * c;
    for (int64_t p = j->n0; p < j->n1; ++p) {
        float u[3], fx, fy, fz;
        unit(j, p, u);
        int ix = vertex(u[0], r, &fx), iy = vertex(u[1], r, &fy), iz = vertex(u[2], r, &fz);
        const float *g = j->a + (((int64_t)iz * r + iy) * r + ix) * c;
        const float gx[2] = {1 - fx, fx}, gy[2] = {1 - fy, fy}, gz[2] = {1 - fz, fz};
        float w[8];
        for (int k = 0; k < 8; ++k) w[k] = gx[k & 1] * gy[(k >> 1) & 1] * gz[(k >> 2) & 1];
        float *o = j->out + p * c;
        for (int k = 0; k < c; ++k)
            o[k] = w[0] * g[k] + w[1] * g[c + k] + w[2] * g[sy + k] + w[3] * g[sy + c + k]
                 + w[4] * g[sz + k] + w[5] * g[sz + c + k] + w[6] * g[sz + sy + k] + w[7] * g[sz + sy + c + k];
    }
    return 0;
}

/* Runs `fn` over the points split into `threads` contiguous parts (one thread for few points). */
static void parallel(void *(*fn)(void *), job_t base, int64_t n, int threads) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1 || n < 8192) threads = 1;
    job_t jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; ++t) {
        jobs[t] = base;
        jobs[t].n0 = n * t / threads;
        jobs[t].n1 = n * (t + 1) / threads;
    }
    for (int t = 1; t < threads; ++t) started[t] = pthread_create(&tid[t], 0, fn, &jobs[t]) == 0;
    fn(&jobs[0]);
    for (int t = 1; t < threads; ++t) {
        if (started[t]) pthread_join(tid[t], 0);
        else fn(&jobs[t]); /* no thread to be had: this part here */
    }
}

void tensorf_features(const float *x, int64_t n, const float *planes, const float *lines, int r, int c,
                      const float *lo, const float *size, float *out, int threads) {
    job_t j = {x, planes, lines, lo, size, out, 0, 0, r, c};
    parallel(tensorf_run, j, n, threads);
}

void dense_features(const float *x, int64_t n, const float *grid, int r, int c,
                    const float *lo, const float *size, float *out, int threads) {
    job_t j = {x, grid, 0, lo, size, out, 0, 0, r, c};
    parallel(dense_run, j, n, threads);
}
