#!/bin/sh
# Runs inside the emulated CET guest (busybox sh, from the initramfs; tests/emulated/init.sh).
# Writes everything it observes to /tmp/out, which goes back to the host; tests/emulated/run judges.
O=/tmp/out
CET=/opt/cet
CRIU=/opt/criu/bin/criu
say() { echo "cet-guest: $*"; }
# Times here are the guest's: under Bochs one guest second takes several seconds of the host's.
# Every CRIU call is bounded (rc 137: killed after 60 s).
criu() { timeout -s KILL 60 "$CRIU" "$@"; }

# count FILE PATTERN: how many lines of FILE match PATTERN (0 when none or no file).
count() { n=$(grep -c "$2" "$1" 2>/dev/null); echo "${n:-0}"; }

# waitfor FILE PATTERN COUNT: waits (up to 20 s) until FILE holds COUNT lines matching PATTERN.
waitfor() {
  i=0
  while [ "$(count "$1" "$2")" -lt "$3" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
}

# gone PID: waits (up to 20 s) until PID has exited (gone, or a zombie nobody reaps).
gone() {
  i=0
  while [ -d "/proc/$1" ] && [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ] && [ $i -lt 200 ]; do
    sleep 0.1; i=$((i + 1))
  done
}

# start NAME THREADS [at-once]: starts the shadow-stack program ($SHSTK, default shstk) with THREADS
# extra threads, reporting to $O/NAME.report; waits until every thread has reported; sets $pid.
start() {
  rm -f "$O/$1.report"
  setsid "$CET/${SHSTK:-shstk}" "$O/$1.report" "$2" $3 </dev/null >/dev/null 2>&1 &
  pid=$!
  waitfor "$O/$1.report" '^thread' $(($2 + 1))
  for t in /proc/$pid/task/*; do
    echo "tid=${t##*/} $(grep '^x86_Thread_features' "$t/status" | tr '\t\n' '  ')"
  done > "$O/$1.status"
  say "$1: started $pid: $(tr '\n' ';' < "$O/$1.report")"
}

# good NAME: asks $pid for its good path and waits for one more "good" line. Commands go through a
# file rather than signals: see shstk.c.
good() {
  n=$(count "$O/$1.report" '^good')
  echo good > "$O/$1.report.cmd"
  waitfor "$O/$1.report" '^good' $((n + 1))
}

# bad NAME: asks $pid for a bad return and records how it ended.
bad() {
  echo bad > "$O/$1.report.cmd"
  gone "$pid"
  if [ -d "/proc/$pid" ] && [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$pid/stat")" != Z ]; then
    echo "alive" > "$O/$1.bad"
  else
    echo "exited" > "$O/$1.bad"
  fi
  dmesg | grep "\[$pid\] control protection" > "$O/$1.fault"
}

# --- the second boot (no5lvl): the same CPU with a 47-bit user address space -----------------------
# /opt/cet/carry/img is the 5-level scenario h2's CRIU image directory (its bitmap lies at 2^52),
# brought here by a second initramfs archive. CRIU 4.2.1 with the plugin must refuse to restore it
# in the plugin's init, before any task is forked.
if grep -qw no5lvl /proc/cmdline; then
  # The test module too, so that the profile differs from the 5-level boot's in the address width only.
  insmod "$CET/cet_ibt_test.ko"
  "$CET/criu-cet" host --json > "$O/host.json" 2>&1
  say "host: $("$CET/criu-cet" host 2>&1 | tr '\n' ' ')"
  criu restore -d -D "$CET/carry/img" -L "$CET/lib" -v4 -o restore.log --pidfile "$O/h2.pid"
  echo $? > "$O/h2.restore.rc"
  cp "$CET/carry/img/restore.log" "$O/h2.restore.log"
  # Nothing of the dumped process may run here, restored or half-restored.
  pidof ibt > "$O/h2.running"
  say "h2 on the 47-bit host: criu restore rc $(cat "$O/h2.restore.rc"): $(grep 'cet:' "$O/h2.restore.log" | head -n 3 | tr '\n' '|')"
  exit 0
fi

# --- scenario 0: the CPU enforces the shadow stack (a bad return before any wait) -----------------
start s0 0 at-once
gone "$pid"
dmesg | grep "\[$pid\] control protection" > "$O/s0.fault"
say "s0: $(tr '\n' ';' < "$O/s0.report") $(cat "$O/s0.fault")"

# --- scenario 1: the engine reads a real shadow-stack process -----------------------------------
start s1 0
"$CET/criu-cet" dump --pid "$pid" -o "$O/s1.img" > "$O/s1.dump.out" 2>&1
echo $? > "$O/s1.dump.rc"
"$CET/criu-cet" show "$O/s1.img" > "$O/s1.show" 2>&1
"$CET/criu-cet" decode "$O/s1.img" > "$O/s1.json" 2>&1
say "s1: criu-cet dump rc $(cat "$O/s1.dump.rc"): $(cat "$O/s1.dump.out")"
cat "$O/s1.show"
# After being read, it still runs with its shadow stack.
good s1
kill -9 "$pid"
wait "$pid" 2>/dev/null

# --- scenario 1b: shadow stack as glibc turns it on (GLIBC_TUNABLES), read by criu-cet dump -------
GLIBC_TUNABLES=glibc.cpu.x86_shstk=on SHSTK=shstk-glibc start g1 0
"$CET/criu-cet" dump --pid "$pid" -o "$O/g1.img" > "$O/g1.dump.out" 2>&1
echo $? > "$O/g1.dump.rc"
"$CET/criu-cet" decode "$O/g1.img" > "$O/g1.json" 2>&1
good g1
bad g1
say "g1: $(tr '\n' ';' < "$O/g1.report") bad return: $(cat "$O/g1.bad") $(cat "$O/g1.fault")"

say "modules: $(lsmod | tail -n +2 | cut -d' ' -f1 | tr '\n' ' ')"

# --- scenario 2: CRIU 4.2.1 with the plugin dumps and restores it --------------------------------
# A kretprobe records what the kernel's rt_sigreturn shadow-stack check answers (CRIU's parasite
# leaves the process through rt_sigreturn).
T=/sys/kernel/tracing
mount -t tracefs tracefs $T 2>/dev/null
echo 'r:cet_sigreturn_shstk restore_signal_shadow_stack ret=$retval' >> $T/kprobe_events \
  && echo 1 > $T/events/kprobes/cet_sigreturn_shstk/enable && echo 1 > $T/tracing_on
start s2 0
mkdir -p "$O/s2/img"
# CRIU's log goes to the console as it is written too: a hung CRIU still shows where it stopped.
: > "$O/s2/img/dump.log"
tail -f "$O/s2/img/dump.log" | grep --line-buffered -E 'Error|Warn|shstk|cet|Dumping|Seized|parasite|Infect|Dumped' | sed 's/^/criu-dump: /' &
tailer=$!
criu dump -t "$pid" -D "$O/s2/img" -L "$CET/lib" -v4 -o dump.log
echo $? > "$O/s2.dump.rc"
# A failed dump leaves the process running: it is ended here either way.
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
sleep 1; kill "$tailer" 2>/dev/null
say "s2: criu dump rc $(cat "$O/s2.dump.rc"), last log line: $(tail -n 1 "$O/s2/img/dump.log")"
criu restore -d -D "$O/s2/img" -L "$CET/lib" -v4 -o restore.log
echo $? > "$O/s2.restore.rc"
say "s2: criu restore rc $(cat "$O/s2.restore.rc")"
grep -E 'Error|Warn|shstk|cet' "$O/s2/img/restore.log" | head -n 20
for f in "$O"/s2/img/cet-*.img; do
  [ -f "$f" ] && "$CET/criu-cet" decode "$f" > "$O/s2.cet.json" 2>&1 && "$CET/criu-cet" show "$f"
done
if [ -d "/proc/$pid" ]; then
  for t in /proc/$pid/task/*; do
    echo "tid=${t##*/} $(grep '^x86_Thread_features' "$t/status" | tr '\t\n' '  ')"
  done > "$O/s2.status-after"
  good s2
  bad s2
fi
say "s2: after restore: $(grep -v '^thread' "$O/s2.report" | tr '\n' ';') bad return: $(cat "$O/s2.bad" 2>/dev/null) $(cat "$O/s2.fault" 2>/dev/null)"
grep "shstk-$pid " $T/trace > "$O/s2.sigreturn" 2>/dev/null
echo 0 > $T/tracing_on
# The pages images are not needed on the host; CRIU's core and the plugin's images are.
rm -f "$O"/s2/img/pages-*.img
# --- IBT: the test-only module, a fixture with user IBT on and a legacy code bitmap --------------
insmod "$CET/cet_ibt_test.ko" > "$O/ibt.insmod" 2>&1
echo $? > "$O/ibt.insmod.rc"
say "test module: rc $(cat "$O/ibt.insmod.rc") $(cat "$O/ibt.insmod") $(ls -l /dev/cet_ibt_test 2>&1)"
# This host's profile, with the module loaded (criu-cet then sees user IBT in the kernel).
"$CET/criu-cet" host --json > "$O/host.json" 2>&1
say "host: $("$CET/criu-cet" host 2>&1 | tr '\n' ' ')"

# alive PID: the process runs (not gone, not a zombie)
alive() { [ -d "/proc/$1" ] && [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# ibt_start NAME [5level]: starts the IBT fixture (ibt.c; with "5level", its bitmap above 2^47 and a
# shadow stack) reporting to $O/NAME.report and waits for its "ready" line; sets $pid.
ibt_start() {
  rm -f "$O/$1.report"
  setsid "$CET/ibt" "$O/$1.report" ${2:-} </dev/null >"$O/$1.err" 2>&1 &
  pid=$!
  waitfor "$O/$1.report" '^ready' 1
  say "$1: started $pid: $(cat "$O/$1.report" "$O/$1.err")"
}

# ibt_cmd NAME CMD: sends CMD and waits (up to 20 s) for its line or the process's end. After a
# call that faults, records the kernel's line about it in $O/NAME.fault.
ibt_cmd() {
  n=$(count "$O/$1.report" .)
  echo "$2" > "$O/$1.report.cmd"
  i=0
  while [ "$(count "$O/$1.report" .)" -le "$n" ] && alive "$pid" && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
  alive "$pid" || { sleep 0.5; dmesg | grep "ibt\[$pid\]" > "$O/$1.fault"; }
}

# ibt_seq NAME MODE CMD...: starts the IBT fixture (ibt_start NAME MODE), sends it each CMD in
# turn, then records in $O/NAME.end whether it was still alive (and ends it) or had exited.
ibt_seq() {
  name=$1; ibt_start "$1" "$2"; shift 2
  for c in "$@"; do ibt_cmd "$name" "$c"; done
  alive "$pid" && { echo alive > "$O/$name.end"; kill -9 "$pid"; } || echo exited > "$O/$name.end"
  wait "$pid" 2>/dev/null
  say "$name: $(tr '\n' ';' < "$O/$name.report") end: $(cat "$O/$name.end") $(cat "$O/$name.fault" 2>/dev/null)"
}

# --- scenario i1: the CPU enforces the legacy code bitmap --------------------------------------
ibt_seq i1 "" legacy endbr clear endbr legacy

# --- scenario i2: criu-cet dump reads the IBT state through the module ------------------------
ibt_start i2
"$CET/criu-cet" dump --pid "$pid" -o "$O/i2.img" > "$O/i2.dump.out" 2>&1
echo $? > "$O/i2.dump.rc"
"$CET/criu-cet" show "$O/i2.img" > "$O/i2.show" 2>&1
"$CET/criu-cet" decode "$O/i2.img" > "$O/i2.json" 2>&1
ibt_cmd i2 legacy
say "i2: criu-cet dump rc $(cat "$O/i2.dump.rc"): $(cat "$O/i2.dump.out")"
cat "$O/i2.show"
kill -9 "$pid"; wait "$pid" 2>/dev/null

# ibt_start_ns NAME: like ibt_start, the fixture being the init of a new pid namespace, as
# container runtimes start a container's first process; sets $pid to its pid here.
ibt_start_ns() {
  rm -f "$O/$1.report"
  setsid unshare -p -f setsid "$CET/ibt" "$O/$1.report" </dev/null >"$O/$1.err" 2>&1 &
  pid=$!
  waitfor "$O/$1.report" '^ready' 1
  # Down from the launcher (setsid execs unshare in place) to the fixture, pid 1 in there.
  for _ in 1 2 3; do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = ibt ] && break
    pid=$(cut -d' ' -f1 "/proc/$pid/task/$pid/children" 2>/dev/null)
  done
  say "$1: started $pid in a new pid namespace: $(cat "$O/$1.report" "$O/$1.err")"
}

# ibt_criu NAME [PLUGIN_DIR [ns|5level]]: CRIU 4.2.1 dumps the IBT fixture (started in a new pid
# namespace with "ns"; with its bitmap above 2^47 and a shadow stack with "5level") and restores it
# (with the plugin when PLUGIN_DIR is given), then asks the restored process for a legacy call, an
# ENDBR call, clears the bit and makes the legacy call again. With "5level", CRIU's own copy of the
# bitmap's pages is zeroed before the restore (zero_pages.c), so only the plugin can bring them back;
# criu-cet dump reads the restored process before the bit is cleared; and CRIU's pages images are
# kept (the host checks the zeroing; the 47-bit boot gets the image directory whole).
ibt_criu() {
  name=$1 plugin=${2:+-L $2} mode=${3:-}
  if [ "$mode" = ns ]; then ibt_start_ns "$name"; else ibt_start "$name" "$mode"; fi
  ibt_cmd "$name" legacy
  mkdir -p "$O/$name/img"
  # shellcheck disable=SC2086
  criu dump -t "$pid" -D "$O/$name/img" $plugin -v4 -o dump.log
  echo $? > "$O/$name.dump.rc"
  # A control-protection fault during the dump (CRIU's parasite runs inside the process).
  sleep 0.5; dmesg | grep "ibt\[$pid\]" > "$O/$name.dumpfault"
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if [ "$mode" = 5level ]; then
    base=$(sed -n 's/^ready .*bitmap=\(0x[0-9a-f]*\).*/\1/p' "$O/$name.report")
    "$CET/zero_pages" "$O/$name/img" "$base" $((1 << 42)) > "$O/$name.zeroed" 2>&1
  fi
  # shellcheck disable=SC2086
  criu restore -d -D "$O/$name/img" $plugin -v4 -o restore.log --pidfile "$O/$name.pid"
  echo $? > "$O/$name.restore.rc"
  # In a new pid namespace the restored process has another pid here.
  [ -s "$O/$name.pid" ] && pid=$(cat "$O/$name.pid")
  if alive "$pid"; then
    ibt_cmd "$name" legacy; ibt_cmd "$name" endbr
    if [ "$mode" = 5level ]; then
      "$CET/criu-cet" dump --pid "$pid" -o "$O/$name.redump.img" > "$O/$name.redump.out" 2>&1
      "$CET/criu-cet" decode "$O/$name.redump.img" > "$O/$name.redump.json" 2>&1
    fi
    ibt_cmd "$name" clear; ibt_cmd "$name" legacy
  fi
  alive "$pid" && { echo alive > "$O/$name.end"; kill -9 "$pid"; } || echo exited > "$O/$name.end"
  grep -E 'Error|cet:' "$O/$name/img/dump.log" "$O/$name/img/restore.log" | head -n 20
  if [ "$mode" = 5level ]; then
    for f in "$O/$name"/img/cet-*.img; do "$CET/criu-cet" decode "$f" > "$O/$name.cet.json" 2>&1; done
  else
    rm -f "$O/$name"/img/pages-*.img
  fi
  say "$name: dump rc $(cat "$O/$name.dump.rc"), restore rc $(cat "$O/$name.restore.rc"): $(tr '\n' ';' < "$O/$name.report") end: $(cat "$O/$name.end") $(cat "$O/$name.fault" 2>/dev/null)"
}

# --- scenario i3: CRIU 4.2.1 with the plugin: IBT state and bitmap come back, enforced ----------
ibt_criu i3 "$CET/lib"
# --- scenario i4: CRIU 4.2.1 alone (its parasite has no ENDBR) -----------------------------------
ibt_criu i4
# --- scenario i5: CRIU 4.2.1 with the plugin, the process in a new pid namespace ----------------
ibt_criu i5 "$CET/lib" ns

# --- 5-level paging (la57): the seed's case ------------------------------------------------------
# --- scenario h1: 5-level: a 57-bit-covering bitmap at 2^52 (above 2^47) with a shadow stack, enforced
ibt_seq h1 5level legacy endbr clear legacy
# --- scenario h2: 5-level: CRIU 4.2.1 with the plugin dumps and restores it --------------------------
ibt_criu h2 "$CET/lib" 5level
# --- scenario h3: 5-level: where the emulated CPU looks up the bit of legacy code above 2^48 ------
# (The ENDBR call ends the SUPPRESS state the first legacy call leaves, in which nothing is checked.)
ibt_seq h3 5level alias endbr high

say "kernel warnings: $(dmesg | grep -A 2 'WARNING' | head -n 6 | tr '\n' '|')"
say "done"
