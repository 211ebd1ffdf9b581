#!/bin/sh
# Runs inside a guest (busybox sh, from the initramfs). Usage: guest.sh ROLE
# Writes everything it observes to the share; the host-side harness (./run) judges it.
S=/mnt/share
CRIU=/opt/criu/bin/criu
CET=/opt/cet
NOLIB=/opt/cet/nolib
LIB=/opt/cet/lib
role=$1
log() { echo "guest[$role]: $*"; }
# Every CRIU call is bounded: CRIU 4.1.1 alone has been seen to hang after "Restoring FAILED."
# (rc 137 then means killed after 60 s).
criu() { timeout -s KILL 60 "$CRIU" "$@"; }

# start NAME ARGS...: starts a fixture reporting to $S/NAME/report; sets $pid.
start() {
  name=$1; shift
  mkdir -p "$S/$name"
  rm -f "$S/$name/report"
  setsid "$CET/cet-fixture" --report "$S/$name/report" "$@" </dev/null >/dev/null 2>&1 &
  pid=$!
  i=0
  while [ ! -s "$S/$name/report" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  log "$name: started fixture $pid: $(cat "$S/$name/report" 2>/dev/null)"
}

# ask NAME OUT: asks the fixture reporting to $S/NAME/report for a fresh report, saved as OUT.
ask() {
  rm -f "$S/$1/report"
  : > "$S/$1/report.req"
  i=0
  while [ ! -s "$S/$1/report" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  cp "$S/$1/report" "$S/$1/$2" 2>/dev/null || echo "no answer" > "$S/$1/$2"
}

# dump NAME LIBDIR: criu dump of $pid into $S/NAME/img; the fixture is killed (by CRIU, or here
# when the dump failed) and reaped.
dump() {
  rm -rf "$S/$1/img"; mkdir -p "$S/$1/img"
  criu dump -t "$pid" -D "$S/$1/img" -L "$2" -v4 -o dump.log
  echo $? > "$S/$1/dump.rc"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  echo "$pid" > "$S/$1/pid"
}

# restore NAME LIBDIR: criu restore -d from $S/NAME/img; log restore-$role.log, rc restore-$role.rc.
restore() {
  criu restore -d -D "$S/$1/img" -L "$2" -v4 -o "restore-$role.log"
  echo $? > "$S/$1/restore-$role.rc"
}

# post_copy NAME LIBDIR: restores $S/NAME/img from $S/NAME/dst as a post-copy migration would:
# `criu page-server --lazy-pages` serves the dump's pages on 127.0.0.1, `criu lazy-pages
# --page-server` beside a copy of the images fetches them, `criu restore --lazy-pages` (rc in
# restore-post-copy.rc). The two daemons meet on a UNIX socket in their work directory, which is
# in /run (not the 9p share); their logs are copied to dst/ once both daemons are done.
post_copy() {
  w=/run/$1-post-copy
  rm -rf "$S/$1/dst" "$w"; mkdir -p "$S/$1/dst" "$w"
  cp "$S/$1/img/"*.img "$S/$1/dst/"
  criu page-server --lazy-pages -D "$S/$1/img" -L "$2" --address 127.0.0.1 --port 27027 \
    -d --pidfile "$w/page-server.pid" -v4 -o page-server.log
  criu lazy-pages --page-server --address 127.0.0.1 --port 27027 -D "$S/$1/dst" -W "$w" -L "$2" \
    -d --pidfile "$w/lazy-pages.pid" -v4 -o lazy-pages.log
  criu restore -d --lazy-pages -D "$S/$1/dst" -W "$w" -L "$2" -v4 -o restore.log
  echo $? > "$S/$1/restore-post-copy.rc"
  # Both daemons end once every page has been served (a minute at most here). PID 1 (init.sh)
  # does not reap them: a zombie counts as ended.
  for d in page-server lazy-pages; do
    p=$(cat "$w/$d.pid" 2>/dev/null)
    i=0
    while [ -n "$p" ] && [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null \
          && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  done
  cp "$w"/*.log "$S/$1/dst/"
}

finish() {
  p=$(cat "$S/$1/pid" 2>/dev/null)
  [ -n "$p" ] && kill -9 "$p" 2>/dev/null
}

# start_ns NAME ARGS...: starts a fixture as the init of a new pid namespace, as container
# runtimes start a container's first process (busybox's unshare); sets $pid to its pid here and
# $launcher to unshare's.
start_ns() {
  name=$1; shift
  mkdir -p "$S/$name"
  rm -f "$S/$name/report"
  setsid unshare -p -f setsid "$CET/cet-fixture" --report "$S/$name/report" "$@" </dev/null >/dev/null 2>&1 &
  launcher=$!
  i=0
  while [ ! -s "$S/$name/report" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  # Down from the launcher (setsid execs unshare in place) to the fixture, pid 1 in there.
  pid=$launcher
  for _ in 1 2 3; do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = cet-fixture ] && break
    pid=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | cut -d' ' -f1)
  done
  log "$name: started fixture $pid in a new pid namespace: $(cat "$S/$name/report" 2>/dev/null)"
}

# restore_ns NAME LIBDIR: like restore, recording the restored init's pid here (a new one: CRIU
# recreates the pid namespace) in $S/NAME/restored.pid.
restore_ns() {
  criu restore -d -D "$S/$1/img" -L "$2" -v4 -o "restore-$role.log" --pidfile "$S/$1/restored.pid"
  echo $? > "$S/$1/restore-$role.rc"
}

finish_ns() {
  p=$(cat "$S/$1/restored.pid" 2>/dev/null)
  [ -n "$p" ] && kill -9 "$p" 2>/dev/null
}

case $role in
B1)
  "$CET/criu-cet" host --json > "$S/B.json"
  # Scenario 4 (B to A): a 48-bit bitmap below 2^47, dumped here.
  # CRIU restores a process under its pid, which must be free on the other guest: far above the
  # pids either guest's boot and scenarios use (without this, A once had 164 taken).
  echo 30000 > /proc/sys/kernel/ns_last_pid
  start s4 --bits 48 --base 0x600000000000 --ones 3 --mixed 5
  ask s4 before
  dump s4 "$LIB"
  ;;
A)
  "$CET/criu-cet" host --json > "$S/A.json"
  # Scenario 1 baseline: CRIU alone with a 57-bit bitmap placed above 2^47.
  start s1-plain --bits 57 --base 0x4000000000000 --ones 3 --mixed 5
  ask s1-plain before
  dump s1-plain "$NOLIB"
  restore s1-plain "$NOLIB"
  ask s1-plain after
  finish s1-plain
  # Scenario 1 with the plugin (its images are scenario 2's, restored on B).
  start s1 --bits 57 --base 0x4000000000000 --ones 3 --mixed 5
  ask s1 before
  dump s1 "$LIB"
  restore s1 "$LIB"
  ask s1 after
  finish s1
  # Scenario 3's images: a 48-bit bitmap below 2^47.
  echo 31000 > /proc/sys/kernel/ns_last_pid   # free on B (see scenario 4)
  start s3 --bits 48 --base 0x600000000000 --ones 3 --mixed 5
  ask s3 before
  dump s3 "$LIB"
  # Scenario 5: predict scenarios 2 and 3 with B's profile before anything moves.
  mkdir -p "$S/s5"
  "$CET/criu-cet" check "$S/s1/img/cet-$(cat "$S/s1/pid").img" --target "$S/B.json" > "$S/s5/high.out" 2>&1
  echo $? > "$S/s5/high.rc"
  "$CET/criu-cet" check "$S/s3/img/cet-$(cat "$S/s3/pid").img" --target "$S/B.json" > "$S/s5/low.out" 2>&1
  echo $? > "$S/s5/low.rc"
  # Scenario 6: a process in a new pid namespace with its bitmap at 2^50, dumped and restored
  # here, as a container runtime would: CRIU alone first, then with the plugin.
  t0=$(cut -d' ' -f1 /proc/uptime)
  for name in s6-plain s6; do
    if [ $name = s6 ]; then lib=$LIB; else lib=$NOLIB; fi
    start_ns $name --bits 57 --base 0x4000000000000 --ones 3 --mixed 5
    ask $name before
    dump $name "$lib"
    wait "$launcher" 2>/dev/null
    restore_ns $name "$lib"
    ask $name after
    finish_ns $name
  done
  log "scenario 6 took $(awk -v t0="$t0" '{printf "%.1f", $1 - t0}' /proc/uptime) s"
  # Scenario 7: post-copy (lazy) migration from this guest's own page server, bitmap at 2^50.
  # CRIU never scans above 2^47 (its images hold none of the bitmap's pages), so only the plugin
  # can restore them, and it does so while userfaultfd is still filling the task's memory.
  t0=$(cut -d' ' -f1 /proc/uptime)
  start s7 --bits 57 --base 0x4000000000000 --ones 3 --mixed 5
  ask s7 before
  dump s7 "$LIB"
  post_copy s7 "$LIB"
  ask s7 after
  finish s7
  log "scenario 7 took $(awk -v t0="$t0" '{printf "%.1f", $1 - t0}' /proc/uptime) s"
  # Scenario 4: restore what B dumped.
  restore s4 "$LIB"
  ask s4 after
  finish s4
  ;;
B2)
  # Scenario 3: A's 48-bit images restored here.
  restore s3 "$LIB"
  ask s3 after
  finish s3
  # Scenario 2: A's 57-bit images on this 4-level host: refused in init, nothing forked.
  restore s1 "$LIB"
  p=$(cat "$S/s1/pid"); [ -d "/proc/$p" ] && echo yes > "$S/s1/alive-on-B" || echo no > "$S/s1/alive-on-B"
  # Scenario 2 baseline, last (CRIU alone can hang here): the images it took without the plugin.
  restore s1-plain "$NOLIB"
  ;;
esac
log "done"
