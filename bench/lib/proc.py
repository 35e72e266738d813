"""CPU time and memory of one server: every process in its session.

Usage: proc.py SESSION_ID -> {"cpu_s": .., "user_s": .., "sys_s": .., "hwm_kb": .., "rss_kb": .., "procs": ..}

CPU is utime + stime from /proc/PID/stat (user_s and sys_s apart); memory is VmHWM (peak resident)
and VmRSS (now) from /proc/PID/status, summed over the session so nginx's
master and worker, or a Python server's children, all count.
"""

import json
import os
import sys


def session_of(stat):
    # Fields after the parenthesised command name: state ppid pgrp session ...
    return int(stat.rsplit(")", 1)[1].split()[3])


def main():
    session = int(sys.argv[1])
    ticks = os.sysconf("SC_CLK_TCK")
    total = {"cpu_s": 0.0, "user_s": 0.0, "sys_s": 0.0, "hwm_kb": 0, "rss_kb": 0, "procs": 0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            if session_of(stat) != session:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            utime, stime = int(fields[11]), int(fields[12])
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        total["cpu_s"] += (utime + stime) / ticks
        total["user_s"] += utime / ticks
        total["sys_s"] += stime / ticks
        total["hwm_kb"] += int(status.get("VmHWM", "0 kB").split()[0])
        total["rss_kb"] += int(status.get("VmRSS", "0 kB").split()[0])
        total["procs"] += 1
    for key in ("cpu_s", "user_s", "sys_s"):
        total[key] = round(total[key], 2)
    print(json.dumps(total))


if __name__ == "__main__":
    main()
