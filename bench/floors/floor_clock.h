// The clock the floor programs time themselves with: CLOCK_MONOTONIC, in nanoseconds.
#ifndef FLOOR_CLOCK_H
#define FLOOR_CLOCK_H
#include <time.h>

static inline double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}
#endif
