// A fixed worker pool: the caller plus threads-1 workers that spin briefly between tasks and
// then sleep. A task is `chunks` calls of fn(ctx, chunk), each chunk run exactly once; the
// caller runs chunks too and returns when all are done. Dispatch's concurrentPerform cost tens
// of microseconds per call, and a decode step makes hundreds of calls.
#include "ckernels.h"
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

struct gk_pool {
    int nthreads;
    pthread_t *threads;
    _Atomic unsigned generation;
    _Atomic int next;
    _Atomic int done;
    _Atomic int sleepers;
    _Atomic int stop;
    int chunks;
    gk_task_fn fn;
    void *ctx;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
};

// Set while this thread runs a chunk: a nested parallel loop then runs serially in place.
static _Thread_local int in_task;

int gk_pool_in_task(void) { return in_task; }

static void run_chunks(gk_pool *p) {
    in_task = 1;
    for (;;) {
        int c = atomic_fetch_add(&p->next, 1);
        if (c >= p->chunks) break;
        p->fn(p->ctx, c);
        atomic_fetch_add(&p->done, 1);
    }
    in_task = 0;
}

static void *worker(void *arg) {
    gk_pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&p->generation)) == seen) {
            if (atomic_load(&p->stop)) return NULL;
            if (++spins < 2000) { _mm_pause(); continue; }
            pthread_mutex_lock(&p->mutex);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mutex);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mutex);
            spins = 0;
        }
        seen = g;
        run_chunks(p);
    }
}

gk_pool *gk_pool_create(int threads) {
    gk_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = calloc((size_t)p->nthreads, sizeof(pthread_t));
    for (int i = 1; i < p->nthreads; i++) pthread_create(&p->threads[i], NULL, worker, p);
    return p;
}

void gk_pool_destroy(gk_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mutex);
    free(p->threads);
    free(p);
}

int gk_pool_threads(const gk_pool *p) { return p->nthreads; }

void gk_pool_run(gk_pool *p, gk_task_fn fn, void *ctx, int chunks) {
    if (chunks <= 0) return;
    if (p->nthreads == 1 || chunks == 1) {
        for (int c = 0; c < chunks; c++) fn(ctx, c);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->chunks = chunks;
    atomic_store(&p->done, 0);
    atomic_store(&p->next, 0);           // publishes fn, ctx, chunks to a worker that takes a chunk
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mutex);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mutex);
    }
    run_chunks(p);
    // A worker may hold a chunk while descheduled (more threads than cores, e.g. parallel
    // tests): spin briefly, then yield the core to it.
    for (int spins = 0; atomic_load(&p->done) < chunks; spins++) {
        if (spins < 2000) _mm_pause();
        else sched_yield();
    }
}
