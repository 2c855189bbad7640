/* test_clock: timed waits run on the monotonic clock (engine/common.c's ls_cond_* and the job
 * condition variable http.c waits on, made in scheduler.c). The wall clock is stepped by
 * wrapping clock_gettime (this test links with -Wl,--wrap=clock_gettime): CLOCK_REALTIME reads
 * a day early, as after an NTP or manual step, and CLOCK_MONOTONIC is untouched. A wait for
 * WAIT_MS must then neither return at once (a deadline the kernel reads on another clock is
 * already past: the waiter spins) nor stall (a deadline a day away). Nothing is timed against a
 * threshold: POSIX promises that a timed wait does not time out before its deadline, and the
 * check is exactly that promise, read on the monotonic clock. */
#include "check.h"
#include "common.h"
#include "scheduler.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 20
#define STEP_S (24 * 3600)

int __real_clock_gettime(clockid_t id, struct timespec *ts);
int __wrap_clock_gettime(clockid_t id, struct timespec *ts);
int __wrap_clock_gettime(clockid_t id, struct timespec *ts) {
    int rc = __real_clock_gettime(id, ts);
    if (rc == 0 && id == CLOCK_REALTIME) ts->tv_sec -= STEP_S;
    return rc;
}

/* One WAIT_MS wait on cv that times out; true when it lasted its WAIT_MS on the monotonic
 * clock (spurious wakeups and signals are waited out). */
static bool waits_its_time(pthread_cond_t *cv, pthread_mutex_t *mu) {
    pthread_mutex_lock(mu);
    double t0 = ls_now();
    int rc;
    while ((rc = ls_cond_wait_ms(cv, mu, WAIT_MS)) == 0)
        t0 = ls_now();
    double waited = ls_now() - t0;
    pthread_mutex_unlock(mu);
    CHECK(rc == ETIMEDOUT, "wait: %s", strerror(rc));
    return waited >= WAIT_MS * 1e-3;
}

static void test_plain_cond(void) {
    pthread_cond_t cv;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    CHECK(ls_cond_init_monotonic(&cv) == 0, "init");
    CHECK(waits_its_time(&cv, &mu), "a monotonic wait returned before its deadline");
    pthread_cond_destroy(&cv);
}

/* The condition variable of a job, which http.c's streams and waits time out on. */
static void test_job_cond(void) {
    gen_request req;
    memset(&req, 0, sizeof req);
    job *j = job_create_detached(&req);
    CHECK(j != NULL, "job");
    if (!j) return;
    CHECK(waits_its_time(&j->cv, &j->mu),
          "a wait on a job's condition variable returned before its deadline (not monotonic)");
    job_release(j);
}

int main(void) {
    struct timespec rt, real;
    clock_gettime(CLOCK_REALTIME, &rt);
    __real_clock_gettime(CLOCK_REALTIME, &real);
    CHECK(real.tv_sec - rt.tv_sec >= STEP_S - 1, "the wall clock is not stepped (wrap missing?)");
    test_plain_cond();
    test_job_cond();
    return check_summary();
}
