#!/bin/busybox sh
# PID 1 of the emulated CET guest (Bochs, tigerlake CPU model): mounts, modules, then guest.sh,
# whose files in /tmp/out go back to the host as a base64 tar between two marker lines on the
# serial console (Bochs has no shared directory); then powers off, which ends Bochs.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
for m in $(cat /opt/cet/modules.order); do insmod "/opt/cet/modules/$m" 2>/dev/null || echo "cet-guest: insmod $m failed"; done
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
echo "cet-guest: $(uname -r), cpu flags: $(grep -o -w 'user_shstk\|ibt\|la57' /proc/cpuinfo | sort -u | tr '\n' ' ')"
mkdir -p /tmp/out
sh /opt/cet/guest.sh 2>&1 | tee /tmp/out/guest.log
dmesg > /tmp/out/dmesg.txt
dmesg -n 1   # no kernel messages inside the transfer
tar -C /tmp/out -czf /tmp/results.tgz .
echo "=====BEGIN-RESULTS====="
base64 /tmp/results.tgz
echo "=====END-RESULTS====="
# The console write returns before the emulated UART (115200 baud) has sent it all: wait for that.
sleep $(( $(stat -c %s /tmp/results.tgz) * 4 / 3 / 10000 + 3 ))
poweroff -f
