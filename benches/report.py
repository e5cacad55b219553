#!/usr/bin/env python3
"""Tables for benches/run, from hyperfine's JSON and /usr/bin/time -v reports (stdlib only).

  report.py one TAG                      one progress line for a finished command
  report.py table RES ID TITLE [opts]    the markdown table of workload ID
  report.py rss TIMEFILE TITLE           one line with a peak RSS
  report.py eratio SMALL.time BIG.time   workload E's RSS ratio
  report.py merge OUT.json IN.json...    one command's hyperfine rounds as one result
"""
import glob
import json
import math
import os
import re
import statistics
import sys


def load(tag):
    r = {"tool": os.path.basename(tag).split("-", 1)[1]}
    try:
        with open(tag + ".json") as f:
            res = json.load(f)["results"][0]
        times = res["times"]
        r.update(median=statistics.median(times), min=min(times), max=max(times),
                 cpu=res["user"] + res["system"], runs=len(times))
    except (OSError, ValueError, KeyError, IndexError):
        r.update(median=None)
    times = [tag + ".time"] + sorted(glob.glob(tag + ".time.*"))
    rss = [x for x in (rss_mib(t) for t in times) if x is not None]
    r["rss"] = max(rss) if rss else None
    cpu = [x for x in (cpu_s(t) for t in times) if x is not None]
    if cpu:
        r["cpu"] = statistics.median(cpu)
    r["verify"] = read(tag + ".verify", "-")
    r["conns"] = read(tag + ".conns", "-")
    r["requests"] = read(tag + ".requests", "-")
    return r


def read(path, default):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def cpu_s(path):
    """User + system seconds of the run whose time -v report is PATH (TAG.time[.K]): from the
    TAG.cpu[.K] beside it (bash's `times`, milliseconds) when there is one, else from PATH."""
    head, _, tail = path.rpartition(".time")
    times = re.findall(r"(\d+)m([\d.]+)s", read(head + ".cpu" + tail, ""))
    if len(times) == 4:  # the shell's own user and system, then its children's
        return sum(int(m) * 60 + float(s) for m, s in times[2:])
    text = read(path, "")
    u = re.search(r"User time \(seconds\): ([\d.]+)", text)
    s = re.search(r"System time \(seconds\): ([\d.]+)", text)
    return float(u.group(1)) + float(s.group(1)) if u and s else None


def rss_mib(path):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", read(path, ""))
    return int(m.group(1)) / 1024 if m else None


def fmt(x, unit=" s", nd=3):
    return "-" if x is None else f"{x:.{nd}f}{unit}"


def one(tag):
    r = load(tag)
    rss = fmt(r["rss"], " MiB", 1)
    print(f"median {fmt(r['median'])}  [{fmt(r.get('min'))} – {fmt(r.get('max'))}]  "
          f"peak RSS {rss}  bytes {r['verify']}")


def parse_duration(text):
    m = re.fullmatch(r"([\d.]+) (ms|s)", text.strip())
    if not m:
        return None
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def curl_bounds(opts):
    """`--target-curl` (at or under curl), `--target-curl=X` (at most X times curl's wall and
    CPU time) or `--target-curl=WALL,CPU`: the bounds the verdict checks; None without it."""
    for o in opts:
        if o == "--target-curl":
            return (1.0, 1.0)
        if o.startswith("--target-curl="):
            bounds = [float(x) for x in o.split("=", 1)[1].split(",")]
            return (bounds[0], bounds[-1])
    return None


def over(ratio, bound, word):
    """'met', or how far past `bound` a ratio to curl is (past curl itself when the bound is 1)."""
    if ratio <= bound:
        return "met"
    past = "" if bound == 1 else " than the bound allows"
    return f"NOT met: {100 * (ratio / bound - 1):.1f}% {word}{past}"


def table(res, wid, title, opts):
    rows = [load(t[:-len(".verify")]) for t in sorted(glob.glob(f"{res}/{wid}-*.verify"))]
    ref_name = "fetchpar-split" if "--split" in opts else "fetchpar"
    ref = next((r for r in rows if r["tool"] == ref_name and r["median"]), None)
    if ref is None:
        ref = next((r for r in rows if r["tool"].startswith("fetchpar") and r["median"]), None)
    order = {"fetchpar": 0, "fetchpar-split": 0, "fetchpar-1conn": 1, "fetchpar-j1": 1,
             "fetchpar-chunk64K": 1, "fetchpar-chunk256K": 1}
    rows.sort(key=lambda r: (order.get(r["tool"], 2), r["median"] or 1e9))
    head = ["tool", "median", "min – max", "CPU (user+sys, median)", "peak RSS", "bytes checked",
            f"{ref['tool'] if ref else 'fetchpar'} / tool"]
    if "--conns" in opts:
        head.insert(5, "connections (requests)")
    print(f"### {title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        ratio = (f"{ref['median'] / r['median']:.2f}" if ref and r["median"] else "-")
        cells = [r["tool"], fmt(r["median"]),
                 f"{fmt(r.get('min'))} – {fmt(r.get('max'))}" if r["median"] else "FAILED",
                 fmt(r.get("cpu")), fmt(r["rss"], " MiB", 1), r["verify"], ratio]
        if "--conns" in opts:
            cells.insert(5, f"{r['conns']} ({r['requests']})")
        print("| " + " | ".join(cells) + " |")
    print()
    by = {r["tool"]: r for r in rows}
    peers = [r for r in rows if not r["tool"].startswith("fetchpar") and r["tool"] != "wget"
             and r["median"] and r["verify"] == "ok"]
    # Under a rate limit, sooner is not better: the rate is the measure (below).
    if ref and peers and "--split" not in opts and "--rate" not in opts:
        best = min(peers, key=lambda r: r["median"])
        target = curl_bounds(opts) is None
        verdict = "met" if ref["median"] <= best["median"] else \
            f"{'NOT met' if target else 'not a target here'}: " \
            f"{100 * (ref['median'] / best['median'] - 1):.1f}% slower"
        print(f"- fastest peer: {best['tool']} ({fmt(best['median'])}); fetchpar "
              f"{fmt(ref['median'])} → {ref['median'] / best['median']:.2f}× ({verdict})")
    bounds = curl_bounds(opts)
    if bounds and ref and by.get("curl", {}).get("median"):
        c = by["curl"]
        w = ref["median"] / c["median"]
        line = f"- target vs curl: wall {w:.2f}× (≤ {bounds[0]:g}: {over(w, bounds[0], 'slower')})"
        if "--cpu" in opts and c.get("cpu"):
            x = ref["cpu"] / c["cpu"]
            line += f", CPU {x:.2f}× (≤ {bounds[1]:g}: {over(x, bounds[1], 'more')})"
        print(line)
    if "--cpu" in opts and not bounds and ref and by.get("curl", {}).get("cpu"):
        c = by["curl"]
        print(f"- vs curl: wall {ref['median'] / c['median']:.2f}×, "
              f"CPU {ref['cpu'] / c['cpu']:.2f}× ({fmt(ref['cpu'])} vs {fmt(c['cpu'])})")
    if "--ideal" in opts and ref:
        ideal = float(opts[opts.index("--ideal") + 1])
        seq = by.get("fetchpar-j1")
        line = f"- ideal latency bound {ideal:.3f} s; fetchpar {ref['median'] / ideal:.3f}× of it"
        if seq and seq["median"]:
            n = int(re.search(r"(\d+) ×", title).group(1))
            delay = float(re.search(r"(\d+) ms", title).group(1)) / 1000
            j = int(re.search(r"J = (\d+)", title).group(1))
            transfer = max(0.0, (seq["median"] - n * delay) / j)
            bound = ideal + transfer
            verdict = "met" if ref["median"] <= 1.05 * bound else \
                f"NOT met: {100 * (ref['median'] / bound - 1):.1f}% over the bound"
            line += (f"; with transfer ((J=1 median − {n}×{delay:g} s) / {j} = {transfer:.3f} s) "
                     f"the bound is {bound:.3f} s and fetchpar is {ref['median'] / bound:.3f}× "
                     f"of it (target ≤ 1.05: {verdict})")
        print(line)
    if "--summary-check" in opts and ref:
        text = read(f"{res}/{wid}-fetchpar.stderr", "")
        # "N files: X or more one after another (estimated), Y with J workers" (or without the
        # estimate's words, with --compare).
        m = re.search(r"(\d+) files?: (.+?) (?:or more )?one after another(?: \(estimated\))?, "
                      r"(.+?) with", text)
        seq = by.get("fetchpar-j1")
        if m and seq and seq["median"]:
            s_busy, s_wall = parse_duration(m.group(2)), parse_duration(m.group(3))
            print(f"- fetchpar's own summary (J = {ref['tool'] and 8}): its sequential estimate "
                  f"{m.group(2)} vs harness J=1 median {fmt(seq['median'])} "
                  f"({100 * (s_busy / seq['median'] - 1):+.1f}%); wall {m.group(3)} vs harness "
                  f"J=8 median {fmt(ref['median'])} ({100 * (s_wall / ref['median'] - 1):+.1f}%); "
                  f"target within ±10%")
        else:
            print("- fetchpar's summary line was not found")
    if "--rate" in opts:
        at = opts.index("--rate")
        size, limit = int(opts[at + 1]), units(opts[at + 2])
        for r in rows:
            if not r["median"]:
                continue
            got = size / r["median"]
            off = got / limit - 1
            verdict = "met" if abs(off) <= 0.10 else "NOT met"
            target = f" (target within 10 %: {verdict})" if r is ref else ""
            print(f"- {r['tool']}: {got / 2**20:.2f} MiB/s over its wall time, "
                  f"{100 * off:+.1f}% of the limit{target}")
    if "--split" in opts:
        n = int(opts[opts.index("--split") + 1])
        one_conn = by.get("fetchpar-1conn")
        aria = by.get("aria2c-split")
        split = by.get("fetchpar-split")
        if split and split["median"] and one_conn and one_conn["median"]:
            x = one_conn["median"] / split["median"]
            verdict = "met" if x >= 0.8 * n else f"NOT met: {x / (0.8 * n) * 100:.0f}% of it"
            print(f"- --split {n} is {x:.2f}× faster than one connection (target ≥ {0.8 * n:.1f}×: "
                  f"{verdict})")
        if split and split["median"] and aria and aria["median"]:
            r = split["median"] / aria["median"]
            print(f"- vs aria2c -x {n} -s {n}: {r:.2f}× ({'met' if r <= 1 else 'NOT met'})")
        if not (split and split["median"]):
            print("- fetchpar --split: not available in this build")
    print()


def units(text):
    """`4M`, `500K`, `1G` or plain bytes, as --limit-rate reads them (K = 1024)."""
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper())
    return float(text[:-1]) * scale if scale else float(text)


def merge(out, paths):
    """The runs of several hyperfine exports of one command, as one export: all the times, and
    user and system time averaged over all the runs."""
    results = []
    for path in paths:
        with open(path) as f:
            results.extend(json.load(f)["results"])
    times = [t for r in results for t in r["times"]]
    weight = lambda key: sum(r[key] * len(r["times"]) for r in results) / len(times)
    merged = {"command": results[0]["command"], "times": times,
              "user": weight("user"), "system": weight("system")}
    with open(out, "w") as f:
        json.dump({"results": [merged]}, f)


def main(argv):
    if argv[1] == "merge":
        merge(argv[2], argv[3:])
    elif argv[1] == "one":
        one(argv[2])
    elif argv[1] == "table":
        table(argv[2], argv[3], argv[4], argv[5:])
    elif argv[1] == "rss":
        print(f"- {argv[3]}: peak RSS {fmt(rss_mib(argv[2]), ' MiB', 1)}")
    elif argv[1] == "eratio":
        small, big = rss_mib(argv[2]), rss_mib(argv[3])
        if small and big:
            verdict = "met" if big <= 1.5 * small else "NOT met"
            print(f"- E: peak RSS long list / short list = {big / small:.2f} "
                  f"(target ≤ 1.5: {verdict})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
