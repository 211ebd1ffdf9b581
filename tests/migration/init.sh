#!/bin/busybox sh
# PID 1 of the guests: mounts, modules, the share; then runs the role given on the kernel command
# line (cet.role=...) and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mkdir -p /proc /sys /dev /tmp /run /mnt/share
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
for m in $(cat /opt/cet/modules.order); do insmod "/opt/cet/modules/$m" 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /mnt/share
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
role=$(sed -n 's/.*cet\.role=\([A-Za-z0-9]*\).*/\1/p' /proc/cmdline)
echo "guest: role $role, $(uname -r), $(grep -c la57 /proc/cpuinfo) la57 cpus"
sh /opt/cet/guest.sh "$role" > "/mnt/share/guest-$role.log" 2>&1
echo "guest: role $role finished"
sync
poweroff -f
