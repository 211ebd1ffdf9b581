# Sourced by the guests' PID 1 (tests/migration/init.sh, tests/emulated/init.sh), which
# initramfs_busybox installs as /etc/guest-boot.sh: busybox's applets, the kernel file systems, the
# kernel modules listed in /opt/cet/modules.order, the loopback interface.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
for m in $(cat /opt/cet/modules.order); do insmod "/opt/cet/modules/$m" 2>/dev/null || echo "guest: insmod $m failed"; done
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
