/* Zero CRIU's own copy of a bitmap's pages in a CRIU image directory, inside the emulated CET guest
 * (which has no Python): the same job as tests/criu_images/zero_bitmap_pages.py, so that a restore
 * that shows the bitmap intact afterwards can only have got it from the cet plugin's image.
 *
 * Usage: zero_pages DIR BASE LEN
 * For each pagemap-N.img in DIR (CRIU's protobuf entries: a pagemap_head {pages_id = 1}, then
 * pagemap_entry {vaddr = 1, compat_nr_pages = 2, flags = 4, nr_pages = 5}), walks the present pages
 * stored in pages-<pages_id>.img and zeroes, in place, each non-zero page inside [BASE, BASE+LEN).
 * Prints the number of pages it zeroed; exits 1, naming the file, on anything it cannot read.
 * The host checks the result with CRIU's own decoder (tests/emulated/judge.py).
 * Build: gcc -static -O1 (tests/emulated/run does).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMG_COMMON_MAGIC 0x54564319u
#define PAGEMAP_MAGIC 0x56084025u
#define PE_PARENT 1u
#define PE_PRESENT 4u
#define PAGE 4096u

static const char *file;

static void fail(const char *what) {
    fprintf(stderr, "zero_pages: %s: %s\n", file, what);
    exit(1);
}

static uint64_t varint(const unsigned char **p, const unsigned char *end) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            fail("truncated varint");
        unsigned char b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    fail("varint longer than 10 bytes");
    return 0;
}

/* The varint fields of one protobuf message, by field number (1..5); other fields are skipped. */
static void fields(const unsigned char *p, const unsigned char *end, uint64_t f[6]) {
    memset(f, 0, 6 * sizeof f[0]);
    while (p < end) {
        uint64_t key = varint(&p, end), n = key >> 3;
        switch (key & 7) {
        case 0: {
            uint64_t v = varint(&p, end);
            if (n < 6)
                f[n] = v;
            break;
        }
        case 1: p += 8; break;
        case 2: p += varint(&p, end); break;
        case 5: p += 4; break;
        default: fail("unknown protobuf wire type");
        }
    }
    if (p != end)
        fail("a field runs past its entry");
}

static unsigned long zero_in(const char *dir, const char *name, uint64_t base, uint64_t len) {
    static char path[4096], pages_path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    file = path;
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        fail("cannot open");
    unsigned char *img = malloc(st.st_size ? st.st_size : 1);
    if (!img || read(fd, img, st.st_size) != st.st_size)
        fail("cannot read");
    close(fd);
    const unsigned char *p = img, *end = img + st.st_size;
    uint32_t magic[2];
    if (st.st_size < 8)
        fail("shorter than its magic");
    memcpy(magic, p, 8);
    if (magic[0] != IMG_COMMON_MAGIC || magic[1] != PAGEMAP_MAGIC)
        fail("not a CRIU pagemap image (magic)");
    p += 8;
    int pages_fd = -1;
    uint64_t f[6], offset = 0;
    unsigned long zeroed = 0;
    static unsigned char page[PAGE];
    for (int first = 1; p < end; first = 0) {
        uint32_t size;
        if (end - p < 4)
            fail("truncated entry size");
        memcpy(&size, p, 4);
        p += 4;
        if ((uint64_t)(end - p) < size)
            fail("truncated entry");
        fields(p, p + size, f);
        p += size;
        if (first) { /* pagemap_head: pages_id */
            snprintf(pages_path, sizeof pages_path, "%s/pages-%llu.img", dir, (unsigned long long)f[1]);
            pages_fd = open(pages_path, O_RDWR);
            file = pages_path;
            if (pages_fd < 0)
                fail("cannot open");
            file = path;
            continue;
        }
        uint64_t nr = f[5] ? f[5] : f[2];
        if (!(f[4] & PE_PRESENT) || (f[4] & PE_PARENT))
            continue;
        for (uint64_t i = 0; i < nr; i++) {
            uint64_t addr = f[1] + i * PAGE, at = offset + i * PAGE;
            if (addr < base || addr - base >= len)
                continue;
            file = pages_path;
            if (pread(pages_fd, page, PAGE, (off_t)at) != PAGE)
                fail("a page the pagemap lists is past the end");
            int nonzero = 0;
            for (unsigned j = 0; j < PAGE && !nonzero; j++)
                nonzero = page[j] != 0;
            if (nonzero) {
                memset(page, 0, PAGE);
                if (pwrite(pages_fd, page, PAGE, (off_t)at) != PAGE)
                    fail("cannot write");
                zeroed++;
            }
            file = path;
        }
        offset += nr * PAGE;
    }
    file = pages_path;
    if (pages_fd < 0 || fstat(pages_fd, &st) != 0 || (uint64_t)st.st_size != offset)
        fail("the pagemap does not describe the pages image's size");
    if (fsync(pages_fd) != 0 || close(pages_fd) != 0)
        fail("cannot write");
    free(img);
    return zeroed;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: zero_pages DIR BASE LEN\n");
        return 2;
    }
    uint64_t base = strtoull(argv[2], 0, 0), len = strtoull(argv[3], 0, 0);
    DIR *d = opendir(argv[1]);
    if (!d) {
        file = argv[1];
        fail("cannot open the directory");
    }
    unsigned long total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long pid;
        char tail[8];
        if (sscanf(e->d_name, "pagemap-%lu.im%1s", &pid, tail) == 2 && !strcmp(strchr(e->d_name, '.'), ".img"))
            total += zero_in(argv[1], e->d_name, base, len);
    }
    closedir(d);
    printf("%lu\n", total);
    return 0;
}
