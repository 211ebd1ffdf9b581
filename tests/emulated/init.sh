#!/bin/busybox sh
# PID 1 of the emulated CET guest (Bochs, sapphire_rapids CPU model): mounts, modules, then guest.sh,
# whose files in /tmp/out go back to the host as a base64 tar between two marker lines on the
# serial console (Bochs has no shared directory). The host ends Bochs when the end marker arrives
# (with acpi=off, which this CPU model needs, poweroff cannot).
. /etc/guest-boot.sh
echo "cet-guest: $(uname -r), cpu flags: $(grep -o -w 'user_shstk\|ibt\|la57' /proc/cpuinfo | sort -u | tr '\n' ' ')"
mkdir -p /tmp/out
sh /opt/cet/guest.sh 2>&1 | tee /tmp/out/guest.log
dmesg > /tmp/out/dmesg.txt
dmesg -n 1   # no kernel messages inside the transfer
tar -C /tmp/out -czf /tmp/results.tgz .
echo "=====BEGIN-RESULTS====="
base64 /tmp/results.tgz
echo "=====END-RESULTS====="
# PID 1 must not end (the kernel would panic) before the host has ended Bochs.
while :; do sleep 60; done
