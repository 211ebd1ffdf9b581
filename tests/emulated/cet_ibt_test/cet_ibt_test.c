// SPDX-License-Identifier: GPL-2.0
/*
 * cet_ibt_test: a TEST-ONLY kernel module for the emulated CET guest (tests/emulated). Never shipped.
 *
 * Linux has no user IBT, yet the CPU consults IA32_U_CET (MSR 0x6a0) on every indirect branch in user
 * mode: ENDBR_EN (bit 2) turns tracking on, LEG_IW_EN (bit 3) lets the legacy code page bitmap at
 * EB_LEG_BITMAP_BASE (bits 63:12) exempt pages. The kernel keeps IA32_U_CET per task in its XSAVES
 * buffer (state component 11, CET_U), so a value written there follows the task across context
 * switches. This module reads and writes that value, as the NT_X86_CET regset of the CET patch series
 * (2019) would have:
 *
 *   /dev/cet_ibt_test, ioctl CET_IBT_TEST_GET / CET_IBT_TEST_SET with struct cet_ibt_test_req
 *   { __u32 tid; __u32 pad; __u64 user_cet; }. tid 0 is the caller; any other thread must be in a
 *   ptrace stop of the caller (as PTRACE_GETREGSET requires). SET changes only the IBT bits: the
 *   shadow-stack bits (SH_STK_EN, WR_SHSTK_EN) stay the kernel's; it answers with the value the
 *   task then has. Reserved bits (9:6) or a bitmap base that is not canonical for the CPU's
 *   linear-address width (57 bits with 5-level paging) give EINVAL.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/uaccess.h>
#include <asm/fpu/api.h>
#include <asm/fpu/types.h>
#include <asm/page.h>
#include <asm/processor.h>

struct cet_ibt_test_req {
	__u32 tid;
	__u32 pad;
	__u64 user_cet;
};

#define CET_IBT_TEST_GET _IOWR('C', 1, struct cet_ibt_test_req)
#define CET_IBT_TEST_SET _IOWR('C', 2, struct cet_ibt_test_req)

#define U_CET_SHSTK_BITS 0x3ULL		/* SH_STK_EN, WR_SHSTK_EN */
#define U_CET_RESERVED 0x3c0ULL		/* bits 9:6 */

/* The task's CET_U state in its XSAVES buffer, made present (zeroed: its init value) if need be. */
static struct cet_user_state *cet_state(struct task_struct *t)
{
	struct xregs_state *xsave = &t->thread.fpu.fpstate->regs.xsave;
	struct cet_user_state *c;

	if (!(xsave->header.xfeatures & XFEATURE_MASK_CET_USER)) {
		xsave->header.xfeatures |= XFEATURE_MASK_CET_USER;
		c = get_xsave_addr(xsave, XFEATURE_CET_USER);
		if (c)
			memset(c, 0, sizeof(*c));
		return c;
	}
	return get_xsave_addr(xsave, XFEATURE_CET_USER);
}

/* Canonical for the CPU's linear-address width (CPUID 0x80000008: 48, or 57 on a CPU with 5-level
 * paging, whether or not the kernel turned it on), as the CPU checks an MSR's address fields. */
static bool canonical_base(u64 v)
{
	return __is_canonical_address(v & ~0xfffULL, boot_cpu_data.x86_virt_bits);
}

static long cet_ibt_test_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct cet_ibt_test_req req;
	struct task_struct *t;
	struct cet_user_state *c;
	long ret = 0;

	if (cmd != CET_IBT_TEST_GET && cmd != CET_IBT_TEST_SET)
		return -ENOTTY;
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&req, (void __user *)arg, sizeof(req)))
		return -EFAULT;
	if (cmd == CET_IBT_TEST_SET &&
	    ((req.user_cet & U_CET_RESERVED) || !canonical_base(req.user_cet)))
		return -EINVAL;
	if (!cpu_feature_enabled(X86_FEATURE_IBT) || !cpu_feature_enabled(X86_FEATURE_USER_SHSTK))
		return -ENODEV;	/* no CET_U state component on this machine */

	if (req.tid == 0) {
		t = current;
		get_task_struct(t);
	} else {
		struct pid *pid = find_get_pid(req.tid);

		t = pid ? get_pid_task(pid, PIDTYPE_PID) : NULL;
		put_pid(pid);
		if (!t)
			return -ESRCH;
		/* Like PTRACE_GETREGSET: the caller's tracee, in a ptrace stop (so not running). */
		if (t != current && (!(t->ptrace) || t->parent != current || !task_is_traced(t))) {
			put_task_struct(t);
			return -EBUSY;
		}
	}

	if (t == current) {
		/* Saves this task's live registers to its buffer; they are loaded back from it on the
		 * way out to user mode, with whatever was changed here. */
		kernel_fpu_begin();
	} else {
		fpregs_lock();
	}
	c = cet_state(t);
	if (!c) {
		ret = -ENODEV;
	} else if (cmd == CET_IBT_TEST_GET) {
		req.user_cet = c->user_cet;
	} else {
		c->user_cet = (c->user_cet & U_CET_SHSTK_BITS) | (req.user_cet & ~U_CET_SHSTK_BITS);
		req.user_cet = c->user_cet;
		/* The registers, if still in a CPU, are stale now: load them from the buffer. */
		t->thread.fpu.last_cpu = -1;
	}
	if (t == current)
		kernel_fpu_end();
	else
		fpregs_unlock();
	put_task_struct(t);

	if (!ret && copy_to_user((void __user *)arg, &req, sizeof(req)))
		ret = -EFAULT;
	return ret;
}

static const struct file_operations cet_ibt_test_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = cet_ibt_test_ioctl,
};

static struct miscdevice cet_ibt_test_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "cet_ibt_test",
	.fops = &cet_ibt_test_fops,
	.mode = 0600,
};

module_misc_device(cet_ibt_test_dev);
MODULE_DESCRIPTION("TEST ONLY: a task's IA32_U_CET (user IBT) for criu-cet's emulated CET guest");
MODULE_LICENSE("GPL");
