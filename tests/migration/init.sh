#!/bin/busybox sh
# PID 1 of the guests: mounts, modules, the share; then runs the role given on the kernel command
# line (cet.role=...) and powers off.
. /etc/guest-boot.sh
mkdir -p /mnt/share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /mnt/share
role=$(sed -n 's/.*cet\.role=\([A-Za-z0-9]*\).*/\1/p' /proc/cmdline)
echo "guest: role $role, $(uname -r), $(grep -c la57 /proc/cpuinfo) la57 cpus"
sh /opt/cet/guest.sh "$role" > "/mnt/share/guest-$role.log" 2>&1
echo "guest: role $role finished"
sync
poweroff -f
