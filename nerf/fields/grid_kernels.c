/* Reading the factorised (TensoRF) and dense grids at many points, and the gradient of their
 * entries from the features' gradient: the arithmetic of nerf/fields/grids.py (TensoRFVM.forward,
 * DenseGrid.forward) in one pass per point. Built and loaded by nerf/render/native.py; all arrays
 * float32, contiguous.
 *
 * The backward passes scatter into gradient arrays the caller has zeroed. Every thread visits every
 * point but writes only the rows it owns (a band of the planes' row axis, of the dense grid's z
 * axis, some of the lines), so no two threads add to one row, nothing is locked and the sums are
 * the same in every run. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define MAX_THREADS 64
#define MAX_C 256 /* channels per grid entry the kernels take (the caller checks) */

typedef struct {
    const float *x, *a, *b, *lo, *size, *grad;
    float *out, *out_b;
    int64_t n0, n1;
    int r, c, part, parts;
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

/* q[k] += w * t[k], k < c */
static inline void add_scaled(float *restrict q, const float *restrict t, float w, int c) {
    for (int k = 0; k < c; ++k) q[k] += w * t[k];
}

/* TensoRF's factors m: plane m's column axis PA, row axis PB, line m's axis LW (TensoRFVM.PLANES, LINES) */
static const int PA[3] = {0, 0, 1}, PB[3] = {1, 2, 2}, LW[3] = {2, 1, 0};

/* TensoRF: planes (3, r, r, c) over axis pairs (0,1) (0,2) (1,2), rows by the second axis;
 * lines (3, r, c) along axes 2, 1, 0; out (n, 3c) = plane * line per factor. */
static void *tensorf_run(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int r = j->r, c = j->c;
    for (int64_t p = j->n0; p < j->n1; ++p) {
        float u[3];
        unit(j, p, u);
        float *o = j->out + p * 3 * c;
        for (int m = 0; m < 3; ++m) {
            float fa, fb, fw;
            int ia = vertex(u[PA[m]], r, &fa), ib = vertex(u[PB[m]], r, &fb), iw = vertex(u[LW[m]], r, &fw);
            const float *restrict p00 = j->a + ((int64_t)m * r * r + (int64_t)ib * r + ia) * c;
            const float *restrict p01 = p00 + c, *restrict p10 = p00 + (int64_t)r * c, *restrict p11 = p10 + c;
            const float *restrict l0 = j->b + ((int64_t)m * r + iw) * c, *restrict l1 = l0 + c;
            const float w00 = (1 - fa) * (1 - fb), w01 = fa * (1 - fb), w10 = (1 - fa) * fb, w11 = fa * fb;
            const float v0 = 1 - fw, v1 = fw;
            float *restrict om = o + m * c;
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

/* TensoRF backward: grad (n, 3c) of the features -> gradient of the planes (`out`) and lines
 * (`out_b`). This job owns plane rows whose row-axis index lies in its band and the lines
 * m % parts == part. */
static void *tensorf_back_run(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int r = j->r, c = j->c;
    const int b0 = (int)((int64_t)r * j->part / j->parts), b1 = (int)((int64_t)r * (j->part + 1) / j->parts);
    for (int64_t p = j->n0; p < j->n1; ++p) {
        float u[3];
        unit(j, p, u);
        const float *g = j->grad + p * 3 * c;
        for (int m = 0; m < 3; ++m) {
            float fa, fb, fw;
            int ia = vertex(u[PA[m]], r, &fa), ib = vertex(u[PB[m]], r, &fb), iw = vertex(u[LW[m]], r, &fw);
            const int lines_mine = m % j->parts == j->part, row0 = ib >= b0 && ib < b1, row1 = ib + 1 >= b0 && ib + 1 < b1;
            if (!lines_mine && !row0 && !row1) continue;
            const int64_t pbase = (int64_t)m * r * r + (int64_t)ib * r + ia, lbase = (int64_t)m * r + iw;
            const float *p00 = j->a + pbase * c, *p01 = p00 + c, *p10 = p00 + (int64_t)r * c, *p11 = p10 + c;
            const float *l0 = j->b + lbase * c, *l1 = l0 + c;
            const float w00 = (1 - fa) * (1 - fb), w01 = fa * (1 - fb), w10 = (1 - fa) * fb, w11 = fa * fb;
            const float v0 = 1 - fw, v1 = fw;
            const float *gm = g + m * c;
            float t[MAX_C];
            if (row0 || row1) {
                for (int k = 0; k < c; ++k) t[k] = gm[k] * (v0 * l0[k] + v1 * l1[k]);
                float *restrict q = j->out + pbase * c;
                if (row0) {
                    add_scaled(q, t, w00, c);
                    add_scaled(q + c, t, w01, c);
                }
                if (row1) {
                    add_scaled(q + (int64_t)r * c, t, w10, c);
                    add_scaled(q + (int64_t)r * c + c, t, w11, c);
                }
            }
            if (lines_mine) {
                for (int k = 0; k < c; ++k) t[k] = gm[k] * (w00 * p00[k] + w01 * p01[k] + w10 * p10[k] + w11 * p11[k]);
                float *restrict q = j->out_b + lbase * c;
                add_scaled(q, t, v0, c);
                add_scaled(q + c, t, v1, c);
            }
        }
    }
    return 0;
}

/* Dense backward: grad (n, c) -> gradient of the grid (`out`); this job owns a band of z. */
static void *dense_back_run(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int r = j->r, c = j->c;
    const int z0 = (int)((int64_t)r * j->part / j->parts), z1 = (int)((int64_t)r * (j->part + 1) / j->parts);
    const int64_t sy = (int64_t)r * c, sz = (int64_t)r * r * c;
    for (int64_t p = j->n0; p < j->n1; ++p) {
        float u[3], fx, fy, fz;
        unit(j, p, u);
        int ix = vertex(u[0], r, &fx), iy = vertex(u[1], r, &fy), iz = vertex(u[2], r, &fz);
        const int lo_mine = iz >= z0 && iz < z1, hi_mine = iz + 1 >= z0 && iz + 1 < z1;
        if (!lo_mine && !hi_mine) continue;
        float *q = j->out + (((int64_t)iz * r + iy) * r + ix) * c;
        const float gx[2] = {1 - fx, fx}, gy[2] = {1 - fy, fy}, gz[2] = {1 - fz, fz};
        float w[8];
        for (int k = 0; k < 8; ++k) w[k] = gx[k & 1] * gy[(k >> 1) & 1] * gz[(k >> 2) & 1];
        const float *g = j->grad + p * c;
        if (lo_mine)
            for (int k = 0; k < c; ++k) {
                q[k] += w[0] * g[k]; q[c + k] += w[1] * g[k]; q[sy + k] += w[2] * g[k]; q[sy + c + k] += w[3] * g[k];
            }
        if (hi_mine)
            for (int k = 0; k < c; ++k) {
                q[sz + k] += w[4] * g[k]; q[sz + c + k] += w[5] * g[k];
                q[sz + sy + k] += w[6] * g[k]; q[sz + sy + c + k] += w[7] * g[k];
            }
    }
    return 0;
}

/* Runs `fn` on `threads` jobs: with `split_points` each gets a contiguous part of the points,
 * otherwise each gets all of them and its own `part` of the output (one thread for few points). */
static void run_jobs(void *(*fn)(void *), job_t base, int64_t n, int threads, int split_points) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1 || n < 8192) threads = 1;
    job_t jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; ++t) {
        jobs[t] = base;
        jobs[t].n0 = split_points ? n * t / threads : 0;
        jobs[t].n1 = split_points ? n * (t + 1) / threads : n;
        jobs[t].part = split_points ? 0 : t;
        jobs[t].parts = split_points ? 1 : threads;
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
    job_t j = {x, planes, lines, lo, size, 0, out, 0, 0, 0, r, c, 0, 1};
    run_jobs(tensorf_run, j, n, threads, 1);
}

void dense_features(const float *x, int64_t n, const float *grid, int r, int c,
                    const float *lo, const float *size, float *out, int threads) {
    job_t j = {x, grid, 0, lo, size, 0, out, 0, 0, 0, r, c, 0, 1};
    run_jobs(dense_run, j, n, threads, 1);
}

void tensorf_backward(const float *x, int64_t n, const float *grad, const float *planes, const float *lines, int r,
                      int c, const float *lo, const float *size, float *grad_planes, float *grad_lines, int threads) {
    job_t j = {x, planes, lines, lo, size, grad, grad_planes, grad_lines, 0, 0, r, c, 0, 1};
    run_jobs(tensorf_back_run, j, n, threads, 0);
}

void dense_backward(const float *x, int64_t n, const float *grad, int r, int c, const float *lo, const float *size,
                    float *grad_grid, int threads) {
    job_t j = {x, 0, 0, lo, size, grad, grad_grid, 0, 0, 0, r, c, 0, 1};
    run_jobs(dense_back_run, j, n, threads, 0);
}
