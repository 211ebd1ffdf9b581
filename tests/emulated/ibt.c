/* A process whose indirect branches the CPU tracks (user IBT), with a legacy code page bitmap, for the
 * emulated CET guest (tests/emulated). Freestanding (no libc: every indirect branch in it is ours).
 *
 * Usage: ibt REPORT [5level]
 *
 * Maps the legacy code page bitmap as the IBT design has it (one bit per 4 KiB page of the 48-bit
 * address space: 8 GiB, MAP_PRIVATE|MAP_NORESERVE, out of core dumps, named "ibt_bitmap"), puts a
 * function without ENDBR64 (mov $42,%eax; ret) on a page of its own, marks that page legacy in the
 * bitmap, and asks the test-only module (/dev/cet_ibt_test) to set its IA32_U_CET to
 * ENDBR_EN | LEG_IW_EN | bitmap. The module's device is opened for each request and closed again.
 * With "5level" (a host with 5-level paging), the seed's case: first it turns its shadow stack on
 * (arch_prctl ARCH_SHSTK_ENABLE), and the bitmap covers 57 address bits (4 TiB) and lies at 2^52,
 * above the 47-bit user address space, with two all-ones pages at 1 TiB into it besides the legacy
 * page's byte: three populated pages in all.
 * Then it reports and polls REPORT.cmd every 50 ms for a command, each answered with a line:
 *   legacy   call the non-ENDBR function through a pointer: "legacy ret=42 ..." if the CPU let it
 *            (its page is marked), else the CPU raises #CP and the kernel kills us with SIGSEGV
 *   endbr    call a function that starts with ENDBR64 through a pointer: "endbr ret=7 ..."
 *   clear    clear the legacy page's bit: "clear ..."
 *   mark     set it again: "mark ..."
 *   alias    (5level) with legacy code (mov $43,%eax; ret) on a page at 2^50, above 2^48: clear that
 *            page's bit and set the bit of the page at 2^50 mod 2^48 (0), then call it: "alias ret=43"
 *            if the CPU looked its bit up at (LIP mod 2^48) >> 12, as Bochs 3.0 does, else #CP
 *   high     (5level) the other way round: its own bit set, the alias's cleared, then call it:
 *            "high ret=43" if the CPU used all 57 bits of LIP, else #CP
 * Every line ends with "user_cet=0x... bit=B ssp=0x... shstk=0x... digest=0x...": IA32_U_CET as the
 * module reads it for us, the legacy page's bit in the bitmap, the shadow-stack pointer in main (rdssp,
 * read afresh before each command; 0 with shadow stack off), ARCH_SHSTK_STATUS's features, and an
 * FNV-1a hash of the bitmap's populated pages.
 * The first line: "ready pid=P bitmap=0x... legacy=0x... user_cet=0x... bit=1".
 * Build: gcc -static -nostdlib -fno-builtin -O1 -fcf-protection=full (tests/emulated/run does).
 */
typedef unsigned long u64;
typedef unsigned int u32;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_ioctl 16
#define SYS_madvise 28
#define SYS_nanosleep 35
#define SYS_getpid 39
#define SYS_exit 60
#define SYS_unlink 87
#define SYS_prctl 157
#define SYS_arch_prctl 158

static long sys6(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys3(nr, a, b, c) sys6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

struct cet_ibt_test_req {
    u32 tid;
    u32 pad;
    u64 user_cet;
};
/* _IOWR('C', 1, 16 bytes) and _IOWR('C', 2, 16 bytes) */
#define CET_IBT_TEST_GET 0xc0104301UL
#define CET_IBT_TEST_SET 0xc0104302UL
#define ENDBR_EN 0x4UL
#define LEG_IW_EN 0x8UL
#define ARCH_SHSTK_ENABLE 0x5001
#define ARCH_SHSTK_STATUS 0x5005
#define MAP_FIXED_NOREPLACE 0x100000
#define HIGH_BITMAP (1UL << 52)
#define ONES_AT (1UL << 40) /* the all-ones pages' offset in the 57-bit bitmap */
#define HIGH_CODE (1UL << 50) /* legacy code above 2^48, for "alias" and "high" */

static const char *report;
static char cmdpath[256];
static unsigned char *bitmap;
static u64 legacy_page;
static int five_level;
static u64 main_ssp;

static u64 len(const char *s) {
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

static char *put(char *p, const char *s) {
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_hex(char *p, u64 v) {
    char d[16];
    int n = 0;
    p = put(p, "0x");
    do {
        d[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = d[--n];
    return p;
}

static char *put_dec(char *p, u64 v) {
    char d[20];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = d[--n];
    return p;
}

static void die(const char *why) {
    sys3(SYS_write, 2, why, len(why));
    sys3(SYS_exit, 2, 0, 0);
}

/* One request to the test module. The device is opened for each and closed again: no descriptor
 * of it stays open across a checkpoint (CRIU cannot dump a character device it does not know). */
static long module(u64 request, struct cet_ibt_test_req *r) {
    long fd = sys3(SYS_open, "/dev/cet_ibt_test", 02, 0);
    if (fd < 0)
        return fd;
    long ret = sys3(SYS_ioctl, fd, request, r);
    sys3(SYS_close, fd, 0, 0);
    return ret;
}

static u64 user_cet(void) {
    struct cet_ibt_test_req r = {0, 0, 0};
    if (module(CET_IBT_TEST_GET, &r) != 0)
        return ~0UL;
    return r.user_cet;
}

static unsigned char *bit_byte(void) { return bitmap + (legacy_page >> 15); }
static unsigned char bit_mask(void) { return (unsigned char)(1u << ((legacy_page >> 12) & 7)); }

/* FNV-1a over the bitmap's populated pages: the legacy page's bit page and, with 5level, the two
 * all-ones pages. */
static u64 digest(void) {
    u64 h = 0xcbf29ce484222325UL;
    const unsigned char *page = (const unsigned char *)((u64)bit_byte() & ~0xfffUL);
    for (int i = 0; i < 4096; i++)
        h = (h ^ page[i]) * 0x100000001b3UL;
    for (u64 i = 0; five_level && i < 2 * 4096; i++)
        h = (h ^ bitmap[ONES_AT + i]) * 0x100000001b3UL;
    return h;
}

/* Appends "LINE user_cet=0x... bit=B\n" to REPORT (opened and closed each time). */
static void say(const char *line) {
    char buf[256];
    char *p = put(buf, line);
    p = put(p, " user_cet=");
    p = put_hex(p, user_cet());
    p = put(p, " bit=");
    p = put_dec(p, (*bit_byte() & bit_mask()) ? 1 : 0);
    u64 features = 0;
    sys3(SYS_arch_prctl, ARCH_SHSTK_STATUS, &features, 0);
    p = put(p, " ssp=");
    p = put_hex(p, main_ssp);
    p = put(p, " shstk=");
    p = put_hex(p, features);
    p = put(p, " digest=");
    p = put_hex(p, digest());
    *p++ = '\n';
    long fd = sys3(SYS_open, report, 01 | 0100 | 02000, 0644); /* O_WRONLY|O_CREAT|O_APPEND */
    if (fd < 0)
        die("ibt: cannot open the report\n");
    sys3(SYS_write, fd, buf, p - buf);
    sys3(SYS_close, fd, 0, 0);
}

/* Called through a pointer: starts with ENDBR64 (-fcf-protection). noinline and used through a
 * volatile pointer so that the call stays indirect. */
__attribute__((noinline)) static int with_endbr(void) { return 7; }
static int (*volatile endbr_fn)(void) = with_endbr;

static void run(const char *cmd) {
    char line[96];
    char *p;
    if (cmd[0] == 'l') {
        int (*volatile legacy)(void) = (int (*)(void))legacy_page;
        int r = legacy(); /* an indirect call to code without ENDBR64 */
        p = put(line, "legacy ret=");
        p = put_dec(p, (u64)r);
        *p = 0;
        say(line);
    } else if (cmd[0] == 'e') {
        int r = endbr_fn();
        p = put(line, "endbr ret=");
        p = put_dec(p, (u64)r);
        *p = 0;
        say(line);
    } else if (cmd[0] == 'c') {
        *bit_byte() &= (unsigned char)~bit_mask();
        say("clear");
    } else if (cmd[0] == 'm') {
        *bit_byte() |= bit_mask();
        say("mark");
    } else if (five_level && (cmd[0] == 'a' || cmd[0] == 'h')) {
        static int mapped;
        if (!mapped) {
            long c = sys6(SYS_mmap, HIGH_CODE, 4096, 3, 0x02 | 0x20 | MAP_FIXED_NOREPLACE, -1, 0);
            if (c != (long)HIGH_CODE)
                die("ibt: cannot map the code page at 2^50\n");
            static const unsigned char code[] = {0xb8, 0x2b, 0x00, 0x00, 0x00, 0xc3}; /* mov $43,%eax; ret */
            for (u64 i = 0; i < sizeof code; i++)
                ((unsigned char *)c)[i] = code[i];
            sys3(SYS_mprotect, c, 4096, 5);
            mapped = 1;
        }
        /* Bit (LIP >> 12) & 7 of byte LIP >> 15: both are bit 0 here (2^50 and 2^50 mod 2^48 = 0). */
        unsigned char *own = bitmap + (HIGH_CODE >> 15), *alias = bitmap + ((HIGH_CODE & ((1UL << 48) - 1)) >> 15);
        *own = cmd[0] == 'h';
        *alias = cmd[0] == 'a';
        int (*volatile legacy)(void) = (int (*)(void))HIGH_CODE;
        int r = legacy();
        p = put(line, cmd[0] == 'a' ? "alias ret=" : "high ret=");
        p = put_dec(p, (u64)r);
        *p = 0;
        say(line);
    }
}

int main(int argc, char **argv) {
    if (argc < 2)
        die("usage: ibt REPORT\n");
    report = argv[1];
    char *p = put(cmdpath, report);
    put(p, ".cmd");
    five_level = argc > 2 && argv[2][0] == '5';
    if (five_level) {
        /* Inline: the function that turns shadow stack on can never return (main does not). */
        long r;
        __asm__ volatile("syscall"
                         : "=a"(r)
                         : "a"(SYS_arch_prctl), "D"(ARCH_SHSTK_ENABLE), "S"(1)
                         : "rcx", "r11", "memory");
        if (r != 0)
            die("ibt: ARCH_SHSTK_ENABLE failed\n");
    }

    /* One bit per 4 KiB page of 2^48 bytes (8 GiB), or of 2^57 (4 TiB) above 2^47. PROT_READ|
     * PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE. */
    long size = five_level ? 1L << 42 : 1L << 33;
    long b = sys6(SYS_mmap, five_level ? HIGH_BITMAP : 0, size, 3,
                  0x02 | 0x20 | 0x4000 | (five_level ? MAP_FIXED_NOREPLACE : 0), -1, 0);
    if (b < 0 && b > -4096)
        die("ibt: cannot map the bitmap\n");
    bitmap = (unsigned char *)b;
    sys3(SYS_madvise, b, size, 16); /* MADV_DONTDUMP: out of core dumps, as the design has it */
    sys6(SYS_prctl, 0x53564d41 /* PR_SET_VMA */, 0 /* ANON_NAME */, b, size, (long)"ibt_bitmap", 0);
    for (u64 i = 0; five_level && i < 2 * 4096; i++)
        bitmap[ONES_AT + i] = 0xff;
    long c = sys6(SYS_mmap, 0, 4096, 3, 0x02 | 0x20, -1, 0);
    if (c < 0 && c > -4096)
        die("ibt: cannot map the legacy page\n");
    legacy_page = (u64)c;
    static const unsigned char code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3}; /* mov $42,%eax; ret */
    for (u64 i = 0; i < sizeof code; i++)
        ((unsigned char *)c)[i] = code[i];
    sys3(SYS_mprotect, c, 4096, 5); /* PROT_READ|PROT_EXEC */
    *bit_byte() |= bit_mask();

    struct cet_ibt_test_req r = {0, 0, (u64)b | ENDBR_EN | LEG_IW_EN};
    if (module(CET_IBT_TEST_SET, &r) != 0)
        die("ibt: the test module (/dev/cet_ibt_test) did not set IA32_U_CET\n");

    char line[128];
    p = put(line, "ready pid=");
    p = put_dec(p, (u64)sys3(SYS_getpid, 0, 0, 0));
    p = put(p, " bitmap=");
    p = put_hex(p, (u64)b);
    p = put(p, " legacy=");
    p = put_hex(p, legacy_page);
    *p = 0;
    __asm__ volatile("rdsspq %0" : "+r"(main_ssp)); /* a no-op, leaving 0, with shadow stack off */
    say(line);

    for (;;) {
        char cmd[16];
        long fd = sys3(SYS_open, cmdpath, 0, 0);
        if (fd >= 0) {
            long n = sys3(SYS_read, fd, cmd, sizeof cmd - 1);
            sys3(SYS_close, fd, 0, 0);
            sys3(SYS_unlink, cmdpath, 0, 0);
            if (n > 0) {
                cmd[n] = 0;
                main_ssp = 0;
                __asm__ volatile("rdsspq %0" : "+r"(main_ssp));
                run(cmd);
            }
        }
        struct { long s, ns; } ts = {0, 50000000};
        sys3(SYS_nanosleep, &ts, 0, 0);
    }
}

/* The entry point: the kernel leaves argc at (%rsp), argv after it. */
__asm__(".globl _start\n"
        "_start:\n"
        "  endbr64\n"
        "  xor %ebp, %ebp\n"
        "  mov (%rsp), %rdi\n"
        "  lea 8(%rsp), %rsi\n"
        "  and $-16, %rsp\n"
        "  call main\n"
        "  mov %eax, %edi\n"
        "  mov $60, %eax\n"
        "  syscall\n");
