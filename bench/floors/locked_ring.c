// The least a queue with a lock costs between two processes: one producer, one consumer, a
// spinlock, the counters on a line of their own, 16-byte records in a ring in shared memory; no
// journal, no wake-ups, no encoding, no sleeping (both sides spin). Prints items/s.
//
//   gcc -O2 -o /tmp/locked_ring bench/floors/locked_ring.c && /tmp/locked_ring
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor_clock.h"

#define SLOTS 65536

struct shared {
    _Alignas(64) _Atomic int lock;
    _Alignas(64) long head, tail, count;
    _Alignas(64) long ring[SLOTS * 2];
};

static void take(struct shared *s) {
    for (;;) {
        int free_ = 0;
        if (atomic_compare_exchange_weak(&s->lock, &free_, 1)) return;
        while (atomic_load_explicit(&s->lock, memory_order_relaxed)) __builtin_ia32_pause();
    }
}

static void give(struct shared *s) { atomic_store_explicit(&s->lock, 0, memory_order_release); }

int main(void) {
    const long items = 1000000;
    for (int trial = 0; trial < 5; trial++) {
        struct shared *s = mmap(0, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (s == MAP_FAILED) return 1;
        double start = now_ns();
        if (fork() == 0) {
            for (long i = 0; i < items;) {
                take(s);
                if (s->count < SLOTS) {
                    long at = s->tail % SLOTS;
                    s->ring[2 * at] = 8;
                    s->ring[2 * at + 1] = i++;
                    s->tail++;
                    s->count++;
                }
                give(s);
            }
            _exit(0);
        }
        for (long got = 0; got < items;) {
            take(s);
            if (s->count) {
                volatile long value = s->ring[2 * (s->head % SLOTS) + 1];
                (void)value;
                s->head++;
                s->count--;
                got++;
            }
            give(s);
        }
        double elapsed = now_ns() - start;
        wait(0);
        printf("locked ring, 1 producer 1 consumer: %.2fM items/s\n", items / elapsed * 1e3);
        munmap(s, sizeof *s);
    }
    return 0;
}
