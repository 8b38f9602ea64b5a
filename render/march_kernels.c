/* Listing the marching steps of rays that fall in occupied cells of an occupancy grid: the
 * arithmetic of OccupancyGrid.candidates (render/occupancy.py) in one pass per ray. Built and
 * loaded by render/native.py. `march_list` writes every kept step's distance and ray, ray-major
 * and front to back as the torch code lists them, in one span per thread of an output that holds
 * every step the rays may have; the caller joins the spans.
 *
 * Ray geometry comes per axis, in the grid's cell units (o_ax, d_ax: 3 rows of n): a world grid's
 * step at distance s is at cell o + d s; a contracted grid's at shift + contract(o + d t) * scale,
 * with t = to_t(s) the step warp and o, d relative to the contraction's centre and radius.
 *
 * fparams: step, knee, power, order (0: world grid, 2: l2 contraction, 3: linf), shift[3], scale[3]
 * iparams: res, coarse res, coarse width (fine cells), stride (steps), k_lo */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define MAX_THREADS 64

typedef struct {
    const float *o, *d, *s_in, *offset, *fp;
    const int64_t *counts, *ip;
    const uint8_t *occupied, *coarse;
    int64_t n, r0, r1, start;
    int64_t *kept;
    float *out_t;
    int64_t *out_ray;
} job_t;

/* max and clamp as selects (fmaxf's NaN rules keep a loop off vector lanes) */
static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float clampf(float v, float lo, float hi) { v = v < lo ? lo : v; return v > hi ? hi : v; }

static inline float to_t(float s, float knee, float power) {
    if (knee <= 0.f || s <= knee) return s;
    if (power == 2.f) {
        float c = s < knee ? knee : s, hi = 2.f * knee * (1.f - 1e-6f);
        if (c > hi) c = hi;
        return knee * knee / (2.f * knee - c);
    }
    return knee * expf(((s < knee ? knee : s) - knee) / knee);
}

#define BLOCK 64 /* steps whose cells are computed at once */

/* Flat cell indices idx[q] (of a lattice `width` fine cells wide, res cells per axis) of ray i's
 * steps k0 + q, q < nk <= BLOCK: loops without branches, so the compiler runs them on vector lanes. */
static inline void cells(const job_t *j, int64_t i, int64_t k0, int nk, float width, int64_t res, int32_t *idx) {
    const float *fp = j->fp;
    const float step = fp[0], knee = fp[1], order = fp[3], s_in = j->s_in[i], off = j->offset[i];
    const float o0 = j->o[i], o1 = j->o[j->n + i], o2 = j->o[2 * j->n + i];
    const float d0 = j->d[i], d1 = j->d[j->n + i], d2 = j->d[2 * j->n + i];
    const float top = (float)(res - 1), kf = (float)k0; /* k < 2^24: exact in float */
    const int32_t r = (int32_t)res;
    float t[BLOCK];
    for (int q = 0; q < nk; ++q) t[q] = s_in + ((kf + (float)q) + off) * step;
    if (order > 0.f && knee > 0.f) { /* the step warp to_t */
        if (fp[2] == 2.f) {
            const float hi = 2.f * knee * (1.f - 1e-6f);
            for (int q = 0; q < nk; ++q) {
                const float far = knee * knee / (2.f * knee - clampf(t[q], knee, hi));
                t[q] = t[q] <= knee ? t[q] : far;
            }
        } else {
            for (int q = 0; q < nk; ++q) t[q] = to_t(t[q], knee, fp[2]);
        }
    }
    float px[BLOCK], py[BLOCK], pz[BLOCK];
    for (int q = 0; q < nk; ++q) {
        px[q] = o0 + d0 * t[q];
        py[q] = o1 + d1 * t[q];
        pz[q] = o2 + d2 * t[q];
    }
    if (order > 0.f) { /* contract: x (2 - 1/m) / m, m = max(norm, 1), then into cell units */
        const int l2 = order == 2.f;
        for (int q = 0; q < nk; ++q) {
            const float x = px[q], y = py[q], z = pz[q];
            const float n2 = sqrtf(x * x + y * y + z * z), ninf = maxf(maxf(fabsf(x), fabsf(y)), fabsf(z));
            const float m = maxf(l2 ? n2 : ninf, 1.f);
            const float f = (2.f - 1.f / m) / m;
            px[q] = fp[4] + x * f * fp[7];
            py[q] = fp[5] + y * f * fp[8];
            pz[q] = fp[6] + z * f * fp[9];
        }
    }
    for (int q = 0; q < nk; ++q) {
        const float x = clampf(px[q] / width, 0.f, top), y = clampf(py[q] / width, 0.f, top);
        const float z = clampf(pz[q] / width, 0.f, top);
        idx[q] = ((int32_t)x * r + (int32_t)y) * r + (int32_t)z;
    }
}

/* Ray i's kept steps written from out_t + at, out_ray + at; returns how many. */
static int64_t ray_steps(const job_t *j, int64_t i, int64_t at) {
    const float step = j->fp[0], order = j->fp[3];
    const int64_t res = j->ip[0], rc = j->ip[1], stride = j->ip[3], k_lo = j->ip[4];
    const float width = (float)j->ip[2];
    const int64_t count = j->counts[i];
    const float s_in = j->s_in[i], off = j->offset[i];
    int32_t idx[BLOCK];
    int64_t kept = 0;
    for (int64_t k0 = k_lo; k0 < count;) {
        int64_t k1 = count;
        if (stride > 1) { /* one coarse test per stride: an unmarked coarse cell is skipped whole */
            cells(j, i, k0, 1, width, rc, idx);
            k1 = k0 + stride < count ? k0 + stride : count;
            if (!j->coarse[idx[0]]) { k0 = k1; continue; }
        }
        for (int64_t b = k0; b < k1; b += BLOCK) {
            const int nk = (int)(k1 - b < BLOCK ? k1 - b : BLOCK);
            cells(j, i, b, nk, 1.f, res, idx);
            for (int q = 0; q < nk; ++q) {
                if (!j->occupied[idx[q]]) continue;
                const float s = s_in + ((float)(b + q) + off) * step;
                j->out_t[at + kept] = order > 0.f ? to_t(s, j->fp[1], j->fp[2]) : s;
                j->out_ray[at + kept] = i;
                ++kept;
            }
        }
        k0 = k1;
    }
    return kept;
}

/* A job's rays, their kept steps packed from its region's start (the steps its rays may have
 * before it); their number in `kept[0]`. */
static void *list_run(void *arg) {
    job_t *j = (job_t *)arg;
    int64_t at = j->start;
    for (int64_t i = j->r0; i < j->r1; ++i) at += ray_steps(j, i, at);
    j->kept[0] = at - j->start;
    return 0;
}

/* Splits the rays into `threads` contiguous parts; part t writes from the number of steps the
 * rays before it may have (the caller's output holds them all) and reports in spans[2t], spans[2t+1]
 * where its steps start and how many there are. Returns the number of parts. */
int march_list(int64_t n, const float *o, const float *d, const float *s_in, const int64_t *counts,
               const float *offset, const uint8_t *occupied, const uint8_t *coarse, const float *fparams,
               const int64_t *iparams, float *out_t, int64_t *out_ray, int64_t *spans, int threads) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1 || n < 256) threads = 1;
    job_t jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    const int64_t k_lo = iparams[4];
    int64_t start = 0;
    for (int t = 0; t < threads; ++t) {
        job_t j = {o, d, s_in, offset, fparams, counts, iparams, occupied, coarse, n, n * t / threads,
                   n * (t + 1) / threads, start, spans + 2 * t + 1, out_t, out_ray};
        jobs[t] = j;
        spans[2 * t] = start;
        for (int64_t i = j.r0; i < j.r1; ++i) start += counts[i] > k_lo ? counts[i] - k_lo : 0;
    }
    for (int t = 1; t < threads; ++t) started[t] = pthread_create(&tid[t], 0, list_run, &jobs[t]) == 0;
    list_run(&jobs[0]);
    for (int t = 1; t < threads; ++t) {
        if (started[t]) pthread_join(tid[t], 0);
        else list_run(&jobs[t]);
    }
    return threads;
}
