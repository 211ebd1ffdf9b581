/* A second CRIU plugin for the tests: it records every pid it is shown by CHECKPOINT_DEVICES
 * and RESUME_DEVICES_LATE in $CET_WITNESS_LOG, and returns -ENOTSUP so that other plugins
 * still see the pid. Written against the CRIU 4.x plugin ABI (shared/FACTS.md section 3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
	const char *name;
	int (*init)(int stage);
	void (*exit)(int stage, int ret);
	unsigned int version;
	unsigned int max_hooks;
	void *hooks[12];
} cr_plugin_desc_t;

static void note(const char *what, int pid)
{
	const char *path = getenv("CET_WITNESS_LOG");
	FILE *f;

	if (!path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "%s %d\n", what, pid);
	fclose(f);
}

static int witness_init(int stage) { return 0; }
static void witness_exit(int stage, int ret) {}
static int witness_checkpoint(int pid) { note("checkpoint", pid); return -ENOTSUP; }
static int witness_resume(int pid) { note("resume", pid); return -ENOTSUP; }
static int witness_pause(int pid) { return -ENOTSUP; }

cr_plugin_desc_t CR_PLUGIN_DESC = {
	.name = "witness",
	.init = witness_init,
	.exit = witness_exit,
	.version = 0x200,
	.max_hooks = 12,
	.hooks = {
		[9] = witness_resume,
		[10] = witness_pause,
		[11] = witness_checkpoint,
	},
};
