"""benchmarks/RESULTS.md from benchmarks/fleet.py's figures: one table per N, the
issue's targets (met or missed, with the numbers), and a projection to 1,000
hosts from the measured per-host cost. Pure: figures in, Markdown out.

``figures[N][method]`` holds ``wall`` (median s), ``wall_text``, ``cpu`` (median
CPU s), ``pss`` (peak MiB), ``rss``, ``fds``, ``commands`` ((min, max) per host)
and ``rcs`` (exit codes seen).
"""

from __future__ import annotations

import math

FLEET = 1000
PARALLEL_PER_CPU = 20  # pyinfra's default parallelism: 20 hosts per CPU, at most N
MEMORY_TARGET_MB = 150  # the target, in MB (10^6 bytes); figures are in MiB
MIB = 1024 * 1024 / 1e6  # MB per MiB


def _commands(entry: dict) -> str:
    low, high = entry["commands"]
    return str(low) if low == high else f"{low}-{high}"


def _ratio(figures: dict, method: str, bound: str) -> float | None:
    if method not in figures or bound not in figures or not figures[bound]["wall"]:
        return None
    return figures[method]["wall"] / figures[bound]["wall"]


def table(count: int, figures: dict, titles: dict, bounds: dict) -> list[str]:
    lines = [
        f"### N = {count}",
        "",
        "| | wall s, median (min-max) | x c) | remote commands / host | CPU s | "
        "peak memory MiB (PSS, tree) | largest process MiB | fds | exit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, entry in figures.items():
        ratio = _ratio(figures, method, bounds.get(method, ""))
        lines.append(
            f"| {titles[method]} | {entry['wall_text']} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | {_commands(entry)} | "
            f"{entry['cpu']:.2f} | {entry['pss']:.0f} | {entry['rss']:.0f} | {entry['fds']} | "
            f"{','.join(map(str, entry['rcs']))} |"
        )
    return [*lines, ""]


def targets(figures: dict[int, dict]) -> list[tuple[str, bool | None, str]]:
    """(target, met (None: not measured), the numbers)."""
    sizes = sorted(figures)
    out: list[tuple[str, bool | None, str]] = []

    def every(method: str, bound: str, limit: float, what: str) -> None:
        ratios = {n: _ratio(figures[n], method, bound) for n in sizes}
        if any(r is None for r in ratios.values()):
            out.append((what, None, "not measured"))
            return
        shown = ", ".join(f"N={n}: {r:.2f}x" for n, r in ratios.items())
        out.append((what, all(r <= limit for r in ratios.values() if r is not None), shown))

    every("a", "c-read", 1.2, "a) tfenv reconcile <= 1.2x c) at every N")
    every("b", "c-apply", 2.0, "b) no-op tf_node apply <= 2x c) at every N")
    top = sizes[-1]
    big = figures[top]
    for method, name in (("b", "b) no-op apply"), ("a", "a) reconcile")):
        if method in big and "d" in big:
            times = big["d"]["wall"] / big[method]["wall"]
            out.append(
                (
                    f"{name} >= 5x faster than d) Ansible at N={top}",
                    times >= 5,
                    f"{times:.1f}x ({big[method]['wall']:.2f} s vs {big['d']['wall']:.2f} s)",
                )
            )
    for method, name in (("b", "b) no-op apply"), ("a", "a) reconcile")):
        if "e" in big and method in big:
            ok = all(figures[n][method]["wall"] < figures[n]["e"]["wall"] for n in sizes)
            shown = ", ".join(f"N={n}: {figures[n][method]['wall']:.2f} s vs "
                              f"{figures[n]['e']['wall']:.2f} s" for n in sizes)  # fmt: skip
            out.append((f"{name} faster than e) plain pyinfra at every N", ok, shown))
    for method, name in (("a", "a) reconcile"), ("b", "b) no-op apply")):
        if method in big:
            pss = big[method]["pss"]
            out.append(
                (
                    f"{name}: control peak memory <= {MEMORY_TARGET_MB} MB at N={top}",
                    pss * MIB <= MEMORY_TARGET_MB,
                    f"{pss * MIB:.0f} MB = {pss:.0f} MiB (PSS of the process tree)",
                )
            )
    if len(sizes) >= 2:
        low = sizes[-2]
        for method, bound in (("a", "c-read"), ("b", "c-apply")):
            if method in big and bound in big:
                grew = big[method]["wall"] / figures[low][method]["wall"]
                bound_grew = big[bound]["wall"] / figures[low][bound]["wall"]
                out.append(
                    (
                        f"{method}) grows from N={low} to N={top} no faster than c)",
                        grew <= bound_grew * 1.1,
                        f"x{grew:.2f} vs c) x{bound_grew:.2f} (10% allowed for noise)",
                    )
                )
    return out


def projection(figures: dict[int, dict], cpus: int, nofile: int) -> list[str]:
    """What one control machine handles, from the per-host cost between the two largest N."""
    sizes = sorted(figures)
    if len(sizes) < 2 or "a" not in figures[sizes[-1]]:
        return ["(needs two sizes with a) measured)", ""]
    low, top = sizes[-2], sizes[-1]
    lines = [
        f"Per-host cost, from N={low} to N={top} (the slope, not the average: fixed "
        "start-up costs drop out):",
        "",
        "| | wall s / host | CPU s / host | memory MiB / host | fds / host |",
        "|---|---|---|---|---|",
    ]
    slopes = {}
    for method in ("a", "b"):
        if method not in figures[top]:
            continue
        a, b = figures[low][method], figures[top][method]
        span = top - low
        slope = {key: (b[key] - a[key]) / span for key in ("wall", "cpu", "pss", "fds")}
        slopes[method] = slope
        lines.append(f"| {method}) | {slope['wall']:.3f} | {slope['cpu']:.3f} | "
                     f"{slope['pss']:.2f} | {slope['fds']:.1f} |")  # fmt: skip
    lines.append("")
    first = sizes[0]
    parallel = min(PARALLEL_PER_CPU * cpus, FLEET)
    window = 30 * 60
    for method, slope in slopes.items():
        top_fig = figures[top][method]
        extra = FLEET - top
        lab_wall = top_fig["wall"] + extra * max(slope["wall"], 0.0)
        cpu = top_fig["cpu"] + extra * max(slope["cpu"], 0.0)
        pss = top_fig["pss"] + extra * max(slope["pss"], 0.0)
        fds = top_fig["fds"] + extra * max(slope["fds"], 0.0)
        one_host = figures[first][method]["wall"]  # one host's run, start-up included
        cpu_bound = cpu / cpus
        latency_bound = math.ceil(FLEET / parallel) * one_host
        lines += [
            f"**{method}) at {FLEET} hosts, one control machine like this one ({cpus} "
            f"CPUs):** control-side CPU {cpu / 60:.1f} CPU min ({cpu_bound / 60:.1f} min on "
            f"{cpus} CPUs); memory {pss:.0f} MiB; {fds:.0f} open files (pyinfra keeps one SSH "
            f"connection per host for the whole run: `ulimit -n` must be well above "
            f"{FLEET}; here it is {nofile}; at the common default of 1024 pyinfra also caps "
            f"its parallelism at (1024 - 10) / 3 = 338); {parallel} hosts worked at once "
            "(20 per CPU).",
            "",
            f"In the lab the hosts run on the same {cpus} CPUs, so the lab's wall slope "
            f"({max(slope['wall'], 0):.3f} s/host, {lab_wall / 60:.1f} min at {FLEET}) is "
            "mostly the hosts' own work queued on those CPUs. On a real fleet the hosts work "
            "in parallel, and a run is bounded by the control CPU "
            f"({cpu_bound / 60:.1f} min) and by {FLEET} / {parallel} rounds of one host's "
            f"time ({one_host:.2f} s at N={first}: {latency_bound / 60:.1f} min): about "
            f"{max(cpu_bound, latency_bound) / 60:.1f} min.",
            "",
        ]
        if method == "a":
            by_cpu = int(window * cpus / max(cpu / FLEET, 1e-6))
            by_latency = int(window / max(one_host, 1e-6) * parallel)
            per_shard = min(by_cpu, by_latency)
            shards = max(1, math.ceil(FLEET / per_shard))
            lines += [
                "Sharding (`tfenv reconcile --shard K/N`, each shard on its own control "
                "machine or Kubernetes Indexed Job, `tfenv reconcile merge` for one report): "
                f"in a 30-minute window one such machine checks min({by_cpu} by CPU, "
                f"{by_latency} by latency) = {per_shard} hosts, so {FLEET} hosts need "
                f"{shards} shard(s) (ceil({FLEET} / {per_shard})). Shard earlier for other "
                "reasons: to keep one run's blast radius and report small, and to keep a "
                "slow night inside the window (aim for a third of it).",
                "",
            ]
    return lines


RTTS_MS = (1, 20)  # a rack's network; another region's


def round_trips(figures: dict, titles: dict) -> list[str]:
    """What each case's remote commands would add on a network (the lab's are loopback)."""
    lines = [
        "The lab's SSH runs over loopback, where a round trip costs next to nothing. On a",
        "network each remote command costs at least one (a host's commands run one after",
        "another; hosts run in parallel), so a run takes at least this much longer:",
        "",
        "| | remote commands / host | " + " | ".join(f"+ s at {r} ms RTT" for r in RTTS_MS) + " |",
        "|---|---|" + "---|" * len(RTTS_MS),
    ]
    for method, entry in figures.items():
        high = entry["commands"][1]
        extra = " | ".join(f"{high * rtt / 1000:.2f}" for rtt in RTTS_MS)
        lines.append(f"| {titles[method]} | {_commands(entry)} | {extra} |")
    return [*lines, ""]


def render(figures: dict[int, dict], titles: dict, bounds: dict, *, machine: str, load: str,
           rounds: int, warmup: int, elapsed: float, when: str, cpus: int | None = None,
           nofile: int | None = None) -> str:  # fmt: skip
    import os
    import resource

    cpus = cpus or os.cpu_count() or 1
    nofile = nofile or resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    lines = [
        "# Fleet benchmark: results",
        "",
        "Written by `make bench-fleet` (`benchmarks/fleet.py`; what each case runs is in its",
        "docstring). Figures, not tests: re-run it to get this machine's.",
        "",
        f"- When: {when}; the whole run took {elapsed / 60:.0f} min.",
        f"- Machine: {machine}.",
        f"- Load when it ended: {load}. Every lab host, the registry and the control side",
        "  share these CPUs: absolute seconds are this machine's, the ratios travel better.",
        f"- Rounds: {warmup} warm-up, then {rounds} counted, the cases interleaved (each",
        "  round starts with the next case) so drifting load hits all alike. A case",
        "  whose warm-up ran longer than --slow-after is counted in fewer rounds at",
        "  that N (`n=` in its row says how many).",
        "- Remote commands per host: counted on the hosts, from sshd's log (LogLevel",
        '  VERBOSE: one "Starting session" per command or file transfer), in each',
        "  case's first run (its warm-up). Memory: the peak PSS of the control side's",
        "  whole process tree (sampled every 0.1 s; Ansible's forks and ssh helpers",
        "  included); CPU: the tree's user + system seconds.",
        "",
        "## Figures",
        "",
    ]
    for count in sorted(figures):
        lines += table(count, figures[count], titles, bounds)
    lines += ["## Targets", "", "| target | met | figures |", "|---|---|---|"]
    for what, met, shown in targets(figures):
        mark = {True: "yes", False: "**missed**", None: "not measured"}[met]
        lines.append(f"| {what} | {mark} | {shown} |")
    lines += ["", "## Round trips on a real network", ""]
    lines += round_trips(figures[max(figures)], titles)
    lines += ["## Projection to 1,000 hosts", ""]
    lines += projection(figures, cpus, nofile)
    return "\n".join(lines) + "\n"
