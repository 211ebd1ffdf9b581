/* A process with a real, enforced user shadow stack, for the emulated CET guest (tests/emulated).
 *
 * Usage: shstk REPORT [THREADS [at-once]]
 *
 * Enables shadow stack for itself with arch_prctl(ARCH_SHSTK_ENABLE, ARCH_SHSTK_SHSTK) made by an
 * inline syscall (this host's static glibc predates the upstream shadow-stack ABI), then never
 * returns from main: the function that enabled it has no shadow-stack entry to return to. Built
 * against trixie's glibc 2.41 with -Wl,-z,shstk and run with GLIBC_TUNABLES=glibc.cpu.x86_shstk=on,
 * it finds shadow stack already on (glibc turned it on before main, as users get it) and says so.
 * THREADS extra threads are started after that; the kernel gives each its own shadow stack.
 * Every thread appends one line to REPORT as it settles:
 *   thread tid=T ssp=0xS features=0xF
 * where ssp is what rdssp says at the exact call depth at which the thread then waits in an inline
 * nanosleep(2) (so a ptrace stop there shows the same SSP) and features is ARCH_SHSTK_STATUS.
 * Then, commands written to REPORT.cmd (polled every 50 ms), or the signals named:
 *   good (SIGUSR1)  a good path: 64 nested calls and returns, then "good tid=T ssp=0xS features=0xF"
 *   bad (SIGUSR2)   a bad return (a ret to an address the shadow stack does not hold): the CPU raises #CP
 *            and the kernel kills the process with SIGSEGV; if it returns anyway, it writes
 *            "NOT ENFORCED" and exits 3.
 * With "at-once", the main thread makes its bad return as soon as it has reported, before it ever
 * waits (so before the kernel has had reason to switch it out and back in).
 * REPORT is opened for each line and closed again, so no file is open across a checkpoint.
 * Build: gcc -static -O1 -fcf-protection=full (tests/emulated/run does).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ARCH_SHSTK_ENABLE 0x5001
#define ARCH_SHSTK_STATUS 0x5005
#define ARCH_SHSTK_SHSTK (1ULL << 0)

static const char *report;
static volatile sig_atomic_t pending;

static long raw_syscall2(long nr, long a, long b) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

static inline unsigned long long rdssp(void) {
    unsigned long long ssp = 0; /* rdssp is a no-op when shadow stack is off */
    __asm__ volatile("rdsspq %0" : "+r"(ssp));
    return ssp;
}

static unsigned long long status(void) {
    unsigned long long features = 0;
    if (raw_syscall2(SYS_arch_prctl, ARCH_SHSTK_STATUS, (long)&features) != 0)
        return ~0ULL;
    return features;
}

static void say(const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int fd = open(report, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n) {
            /* nothing better to do: the harness sees the line missing */
        }
        close(fd);
    }
}

static void on_signal(int sig) { pending = sig; }

static __attribute__((noinline)) int nest(int depth) {
    if (depth == 0)
        return 0;
    int r = nest(depth - 1);
    __asm__ volatile("" ::: "memory");
    return r + 1;
}

static __attribute__((noinline, noreturn)) void landed(void) {
    say("NOT ENFORCED: a bad return reached its target\n");
    _exit(3);
}

static __attribute__((noinline)) void bad_return(void) {
    /* A return whose target is not on the shadow stack: #CP when shadow stack is enforced. */
    __asm__ volatile("push %0\n\tret" ::"r"(&landed) : "memory");
}

/* Commands come in REPORT.cmd ("good" or "bad"), polled every 50 ms, or as signals. */
static int command(void) {
    char path[512], cmd[8] = {0};
    snprintf(path, sizeof path, "%s.cmd", report);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, cmd, sizeof cmd - 1);
    close(fd);
    unlink(path);
    if (n >= 4 && memcmp(cmd, "good", 4) == 0)
        return SIGUSR1;
    if (n >= 3 && memcmp(cmd, "bad", 3) == 0)
        return SIGUSR2;
    return 0;
}

/* Serves commands forever; the inline nanosleep keeps the SSP at the reported value while the
 * thread waits (a ptrace stop there shows the same SSP). */
static int at_once;

static __attribute__((noinline, noreturn)) void serve(int main_thread) {
    unsigned long long ssp = rdssp();
    say("thread tid=%ld ssp=%#llx features=%#llx\n", (long)syscall(SYS_gettid), ssp, status());
    if (main_thread && at_once) {
        say("bad return tid=%ld\n", (long)syscall(SYS_gettid));
        bad_return();
    }
    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        raw_syscall2(SYS_nanosleep, (long)&ts, 0);
        if (!main_thread)
            continue;
        int sig = pending;
        pending = 0;
        if (!sig)
            sig = command();
        if (sig == SIGUSR1) {
            int depth = nest(64);
            say("good tid=%ld ssp=%#llx features=%#llx depth=%d\n", (long)syscall(SYS_gettid), rdssp(), status(),
                depth);
        } else if (sig == SIGUSR2) {
            say("bad return tid=%ld\n", (long)syscall(SYS_gettid));
            bad_return();
        }
    }
}

static void *helper(void *arg) {
    (void)arg;
    serve(0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s REPORT [THREADS]\n", argv[0]);
        return 2;
    }
    report = argv[1];
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    at_once = argc > 3 && strcmp(argv[3], "at-once") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    /* Built against a glibc with shadow-stack support, marked SHSTK and run with
     * GLIBC_TUNABLES=glibc.cpu.x86_shstk=on, glibc has enabled it before main. */
    const char *by = "glibc";
    if (!(status() & ARCH_SHSTK_SHSTK)) {
        by = "arch_prctl";
        long r = raw_syscall2(SYS_arch_prctl, ARCH_SHSTK_ENABLE, ARCH_SHSTK_SHSTK);
        if (r != 0) {
            say("enable failed: arch_prctl(ARCH_SHSTK_ENABLE) = %ld\n", r);
            _exit(4);
        }
    }
    /* From here on main must never return. Helper threads take no signals. */
    say("enabled by=%s tid=%ld ssp=%#llx features=%#llx\n", by, (long)syscall(SYS_gettid), rdssp(), status());
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, helper, NULL) != 0) {
            say("pthread_create failed\n");
            _exit(5);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    serve(1);
}
