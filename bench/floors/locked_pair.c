// What an uncontended lock costs at least: a compare-and-swap to take it and a fetch-and-sub to
// give it back (a futex lock that can have sleepers needs both read-modify-writes), on a line in
// this core's cache. Prints the time of one pair.
//
//   gcc -O2 -o /tmp/locked_pair bench/floors/locked_pair.c && /tmp/locked_pair
#include <stdatomic.h>
#include <stdio.h>

#include "floor_clock.h"

int main(void) {
    _Atomic long state = 0;
    const long pairs = 50000000;
    for (int trial = 0; trial < 3; trial++) {
        double start = now_ns();
        for (long i = 0; i < pairs; i++) {
            long free_ = 0;
            atomic_compare_exchange_strong(&state, &free_, 7);
            atomic_fetch_sub(&state, 7);
        }
        printf("compare-and-swap + fetch-and-sub: %.2f ns\n", (now_ns() - start) / pairs);
    }
    return 0;
}
