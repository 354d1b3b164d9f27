// What a cache line costs to move between two CPUs: two processes hand a counter in shared
// memory back and forth (each waits, spinning, for the other's increment); prints the time of
// one hand-over (one line transfer and the store that follows it).
//
//   gcc -O2 -o /tmp/cacheline_handover bench/floors/cacheline_handover.c && /tmp/cacheline_handover
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor_clock.h"

int main(void) {
    const long rounds = 2000000;
    for (int trial = 0; trial < 3; trial++) {
        _Atomic long *word = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (word == MAP_FAILED) return 1;
        if (fork() == 0) {
            for (long i = 1; i <= rounds; i += 2) {
                while (atomic_load(word) != i) __builtin_ia32_pause();
                atomic_store(word, i + 1);
            }
            _exit(0);
        }
        double start = now_ns();
        for (long i = 0; i < rounds; i += 2) {
            while (atomic_load(word) != i) __builtin_ia32_pause();
            atomic_store(word, i + 1);
        }
        while (atomic_load(word) != rounds) __builtin_ia32_pause();
        double elapsed = now_ns() - start;
        wait(0);
        printf("one hand-over of a cache line between two processes: %.1f ns\n", elapsed / rounds);
        munmap(word, 4096);
    }
    return 0;
}
