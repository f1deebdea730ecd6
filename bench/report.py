#!/usr/bin/env python3
"""Turns bench/run's measurements into results.md, push-times.png and raw.json.

Usage: report.py --raw RUN/raw.jsonl --na RUN/na.jsonl --digests RUN/digests.jsonl
                 --meta RUN/meta.json --out DIR
"""

import argparse
import json
import os
import statistics
from collections import defaultdict

GIB = 1 << 30
MIB = 1 << 20

TOOLS = ["raw-par", "raw-seq", "curl", "hoistd", "skopeo", "ctr", "podman", "dockerd"]
PEERS = ["skopeo", "ctr", "podman", "dockerd"]
IMAGES = ["big", "small", "multi"]
LABEL = {
    "raw-par": "raw, 5 in parallel (the limit)",
    "raw-seq": "raw, sequential",
    "curl": "curl, 5 in parallel",
    "hoistd": "**hoistd** + docker CLI",
    "skopeo": "skopeo copy",
    "ctr": "containerd ctr push",
    "podman": "podman compat API + docker CLI",
    "dockerd": "dockerd 20.10 + docker CLI",
}
DAEMON = {"hoistd": "hoistd", "ctr": "containerd", "podman": "podman", "dockerd": "dockerd"}
IMAGE_LABEL = {"big": "1 GiB (5 layers)", "small": "50 × 1 MiB", "multi": "3 × 100 MiB index"}


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Data:
    def __init__(self, records, na, meta, digests):
        self.records = records
        self.meta = meta
        self.na = {(r["tool"], r["image"]): r["reason"] for r in na}
        self.digests = defaultdict(set)  # (tool, image) → digests the registry held after a first push
        for r in digests:
            self.digests[(r["tool"], r["image"])].add(r["digest"])
        images = meta.get("images", {})
        for r in digests:
            # A tool that pushed something else than the index for a multi-platform image did
            # not do the same work: n/a rather than a faster time.
            expected = images.get(r["image"], {}).get("media_type", "")
            got = r.get("media_type", "")
            if "index" in expected and got and "index" not in got and "list" not in got:
                self.na[(r["tool"], r["image"])] = (
                    f"pushed a single-platform manifest ({got}) instead of the index")
        self.runs = defaultdict(list)  # (tool, image, kind) → ok records
        self.failed = defaultdict(list)
        for r in records:
            if (r["tool"], r["image"]) in self.na:
                continue
            key = (r["tool"], r["image"], r["kind"])
            (self.runs if r["ok"] else self.failed)[key].append(r)

    def median(self, tool, image, kind, value=lambda r: r["seconds"]):
        values = [value(r) for r in self.runs.get((tool, image, kind), []) if value(r) is not None]
        return statistics.median(values) if values else None

    def paired_ratio(self, tool, other, image, kind):
        """Median over rounds of tool's time / other's time in the same round.

        Rounds interleave the tools so that each pair runs minutes apart under the same
        conditions; the machine's speed drifts more than that between rounds (a shared VM), so
        the per-round ratio is the steadier measure of how two tools compare."""
        def by_round(t):
            return {r["round"]: r["seconds"] for r in self.runs.get((t, image, kind), [])}
        mine, theirs = by_round(tool), by_round(other)
        ratios = [mine[k] / theirs[k] for k in mine if k in theirs and theirs[k] > 0]
        return statistics.median(ratios) if ratios else None

    def paired_ratio_kinds(self, tool, image, kind, other_kind):
        """As `paired_ratio`, between two kinds of measurement of one tool and image."""
        def by_round(k):
            return {r["round"]: r["seconds"] for r in self.runs.get((tool, image, k), [])}
        mine, theirs = by_round(kind), by_round(other_kind)
        ratios = [mine[k] / theirs[k] for k in mine if k in theirs and theirs[k] > 0]
        return statistics.median(ratios) if ratios else None

    def spread(self, tool, image, kind):
        """`n=5, 4.1–5.3`: the number of runs and the range of their times."""
        times = [r["seconds"] for r in self.runs.get((tool, image, kind), [])]
        if len(times) < 2:
            return f"n={len(times)}"
        return f"n={len(times)}, {fmt(min(times))}–{fmt(max(times))}"

    def count(self, tool, image, kind):
        return len(self.runs.get((tool, image, kind), []))

    def blob_bytes(self, image):
        if image == "conc8":
            return sum(v["blob_bytes"] for k, v in self.meta.get("images", {}).items()
                       if k.startswith("conc-"))
        return self.meta.get("images", {}).get(image, {}).get("blob_bytes")

    def why_missing(self, tool, image, kind):
        for key in ((tool, image), (tool, "all")):
            if key in self.na:
                return "n/a"
        if self.failed.get((tool, image, kind)):
            return "failed"
        return "–"

    def daemon_value(self, tool, image, kind, field, daemon=None):
        daemon = daemon or DAEMON.get(tool)
        if daemon is None:
            return None
        return self.median(tool, image, kind,
                           lambda r: r["daemons"].get(daemon, {}).get(field))

    def daemon_max(self, tool, image, kind, field, daemon=None):
        daemon = daemon or DAEMON.get(tool)
        values = [r["daemons"].get(daemon, {}).get(field)
                  for r in self.runs.get((tool, image, kind), [])]
        values = [v for v in values if v is not None]
        return max(values) if values else None


def fmt(value, digits=2, unit=""):
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:.0f}{unit}"
    if value >= 10:
        return f"{value:.1f}{unit}"
    if value < 0.1:
        return f"{value:.3f}{unit}"
    return f"{value:.{digits}f}{unit}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def first_push_table(d):
    out = ["| tool | " + " | ".join(f"{IMAGE_LABEL[i]}: s (MiB/s) | × limit" for i in IMAGES) + " |",
           "|---|" + "---:|---:|" * len(IMAGES)]
    for tool in TOOLS:
        cells = []
        for image in IMAGES:
            m = d.median(tool, image, "first")
            limit = d.median("raw-par", image, "first")
            if m is None:
                cells += [d.why_missing(tool, image, "first"), ""]
                continue
            size = d.blob_bytes(image)
            mibs = f" ({size / m / MIB:.0f})" if size else ""
            cells += [f"{fmt(m)}{mibs} <sub>{d.spread(tool, image, 'first')}</sub>",
                      fmt(ratio(m, limit)) + "×" if limit else "–"]
        out.append(f"| {LABEL[tool]} | " + " | ".join(cells) + " |")
    return out


def repush_table(d):
    out = ["| tool | " + " | ".join(IMAGE_LABEL[i] for i in IMAGES) + " |",
           "|---|" + "---:|" * len(IMAGES)]
    for tool in TOOLS:
        if tool == "curl":
            continue
        cells = []
        for image in IMAGES:
            m = d.median(tool, image, "repush")
            cells.append(d.why_missing(tool, image, "repush") if m is None
                         else f"{fmt(m)} <sub>{d.spread(tool, image, 'repush')}</sub>")
        out.append(f"| {LABEL[tool]} | " + " | ".join(cells) + " |")
    return out


def cost_table(d):
    out = ["| tool | image | daemon CPU s | client CPU s | CPU s per GiB (daemon / all) | "
           "daemon peak RSS MiB (median / max) | registry CPU s |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for image in IMAGES:
        size = d.blob_bytes(image)
        for tool in TOOLS:
            if d.median(tool, image, "first") is None:
                continue
            daemon_cpu = d.daemon_value(tool, image, "first", "cpu_s")
            client_cpu = d.median(tool, image, "first", lambda r: r["client_cpu_s"])
            registry_cpu = d.daemon_value(tool, image, "first", "cpu_s", "registry")
            total = (daemon_cpu or 0) + (client_cpu or 0)
            per_gib = (f"{fmt(daemon_cpu / (size / GIB)) if daemon_cpu is not None else '–'} / "
                       f"{fmt(total / (size / GIB))}") if size else "–"
            rss = d.daemon_value(tool, image, "first", "peak_rss_kib")
            rss_max = d.daemon_max(tool, image, "first", "peak_rss_kib")
            rss_text = "–" if rss is None else f"{rss / 1024:.0f} / {rss_max / 1024:.0f}"
            out.append(f"| {LABEL[tool]} | {image} | {fmt(daemon_cpu)} | {fmt(client_cpu)} | "
                       f"{per_gib} | {rss_text} | {fmt(registry_cpu)} |")
    return out


def versus_table(d):
    cols = [(i, "first") for i in IMAGES] + [(i, "repush") for i in IMAGES]
    out = ["| peer | " + " | ".join(f"{i} {'first' if k == 'first' else 're-push'}"
                                   for i, k in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    for peer in PEERS + ["raw-par", "raw-seq", "curl"]:
        cells = []
        for image, kind in cols:
            r = ratio(d.median(peer, image, kind), d.median("hoistd", image, kind))
            cells.append("–" if r is None else f"{r:.2f}×")
        out.append(f"| {LABEL[peer]} | " + " | ".join(cells) + " |")
    return out


def digests_table(d):
    out = ["| tool | " + " | ".join(IMAGE_LABEL[i] for i in IMAGES) + " |",
           "|---|" + "---|" * len(IMAGES)]
    for tool in TOOLS:
        cells = []
        for image in IMAGES:
            seen = d.digests.get((tool, image), set()) - {""}
            original = d.meta.get("images", {}).get(image, {}).get("digest")
            if not seen:
                cells.append("–")
            elif seen == {original}:
                cells.append("original")
            else:
                cells.append("rewritten: " + ", ".join(f"`{x[:19]}…`" for x in sorted(seen)))
        out.append(f"| {LABEL[tool]} | " + " | ".join(cells) + " |")
    return out


def targets(d):
    rows = []

    def row(name, value_text, ok, detail=""):
        verdict = "–" if ok is None else ("**PASS**" if ok else "**FAIL**")
        rows.append(f"| {name} | {value_text} | {verdict} | {detail} |")

    def ratio_text(paired, plain):
        return "–" if paired is None else f"{paired:.2f}× ({plain:.2f}×)" if plain else f"{paired:.2f}×"

    h = d.median("hoistd", "big", "first")
    limit = d.median("raw-par", "big", "first")
    r = d.paired_ratio("hoistd", "raw-par", "big", "first")
    row("1 GiB first push ≤ 1.10× the raw 5-parallel time", ratio_text(r, ratio(h, limit)),
        None if r is None else r <= 1.10,
        f"hoistd {fmt(h)} s vs {fmt(limit)} s, n={d.count('hoistd', 'big', 'first')}/"
        f"{d.count('raw-par', 'big', 'first')}")
    peers = {p: d.median(p, "big", "first") for p in PEERS if d.median(p, "big", "first") is not None}
    if h is not None and peers:
        fastest = min(peers, key=peers.get)
        row("1 GiB first push faster than every peer", f"{peers[fastest] / h:.2f}× faster than {fastest}",
            all(h < v for v in peers.values()),
            ", ".join(f"{p} {fmt(v)} s" for p, v in peers.items()))
    else:
        row("1 GiB first push faster than every peer", "–", None)

    h = d.median("hoistd", "small", "first")
    limit = d.median("raw-par", "small", "first")
    r = d.paired_ratio("hoistd", "raw-par", "small", "first")
    row("50 × 1 MiB first push ≤ 1.2× the raw 5-parallel time", ratio_text(r, ratio(h, limit)),
        None if r is None else r <= 1.2, f"hoistd {fmt(h)} s vs {fmt(limit)} s")

    for image in IMAGES:
        h = d.median("hoistd", image, "repush")
        peers = {p: d.median(p, image, "repush") for p in PEERS
                 if d.median(p, image, "repush") is not None}
        if h is None or not peers:
            row(f"re-push {IMAGE_LABEL[image]} ≤ 1.2× the fastest peer", "–", None)
            continue
        fastest = min(peers, key=peers.get)
        r = d.paired_ratio("hoistd", fastest, image, "repush")
        row(f"re-push {IMAGE_LABEL[image]} ≤ 1.2× the fastest peer",
            ratio_text(r, h / peers[fastest]), None if r is None else r <= 1.2,
            f"hoistd {fmt(h)} s vs {fastest} {fmt(peers[fastest])} s")

    cpu = d.daemon_value("hoistd", "big", "first", "cpu_s")
    size = d.blob_bytes("big")
    per_gib = cpu / (size / GIB) if cpu is not None and size else None
    row("hoistd CPU per GiB pushed ≤ 0.5 s", f"{fmt(per_gib)} s",
        None if per_gib is None else per_gib <= 0.5,
        "hoistd's CPU time during the 1 GiB first push (median), docker CLI not counted")
    rss = d.daemon_max("hoistd", "big", "first", "peak_rss_kib")
    row("hoistd peak RSS during the 1 GiB push ≤ 64 MiB",
        "–" if rss is None else f"{rss / 1024:.1f} MiB",
        None if rss is None else rss <= 64 * 1024, "VmHWM, reset before each push; the maximum over rounds")

    h = d.median("hoistd", "conc8", "concurrent")
    raw = d.median("raw-par", "conc8", "concurrent")
    r = d.paired_ratio("raw-par", "hoistd", "conc8", "concurrent")
    plain = ratio(raw, h)
    row("8 concurrent pushes: aggregate ≥ 90% of the raw 5-parallel throughput",
        "–" if r is None else f"{r * 100:.0f}% ({plain * 100:.0f}%)" if plain else f"{r * 100:.0f}%",
        None if r is None else r >= 0.9,
        f"the same 8 × 128 MiB of blobs: hoistd {fmt(h)} s, raw 5-parallel {fmt(raw)} s")

    h = d.median("hoistd", "big", "load")
    base = d.median("baseline", "big", "load")
    r = d.paired_ratio("hoistd", "baseline", "big", "load")
    row("docker load of the 1 GiB archive ≤ 1.5× the baseline", ratio_text(r, ratio(h, base)),
        None if r is None else r <= 1.5, f"hoistd {fmt(h)} s vs baseline {fmt(base)} s")
    # The cost of checking layers against their DiffIDs: reported against the baseline that
    # also decompresses and hashes each layer, no target of its own.
    verify = d.median("verify-baseline", "big", "load")
    r = d.paired_ratio("hoistd", "verify-baseline", "big", "load")
    row("docker load of the 1 GiB archive against the verify baseline", ratio_text(r, ratio(h, verify)),
        None, f"hoistd {fmt(h)} s vs verify baseline {fmt(verify)} s")
    many = d.median("hoistd", "fanout20", "to-20-repositories")
    one = d.median("hoistd", "fanout20", "to-1-repository")
    if many is not None and one is not None:
        paired = d.paired_ratio_kinds("hoistd", "fanout20", "to-20-repositories", "to-1-repository")
        row("20 concurrent pushes of big to 20 repositories ≤ 1.5× the same to one repository",
            ratio_text(paired, ratio(many, one)), None if paired is None else paired <= 1.5,
            f"{fmt(many)} s vs {fmt(one)} s")
    def measured_text(name, paired, plain):
        """A paired ratio, a "faster than" factor, or CPU seconds, as the row's name says."""
        if paired is not None:
            return ratio_text(paired, plain)
        if "faster" in name:
            return f"{plain:.2f}× faster than the fastest" if plain else "–"
        return f"{fmt(plain)} s"

    for name, paired, plain, ok, detail in pull_target_rows(d):
        row(name, measured_text(name, paired, plain), ok, detail)
    for name, measured, ok, detail in save_target_rows(d, ratio_text):
        row(name, measured, ok, detail)
    for name, paired, plain, ok, detail in tls_target_rows(d):
        row(name, measured_text(name, paired, plain), ok, detail)
    for name, paired, plain, ok, detail in small_blob_target_rows(d):
        row(name, ratio_text(paired, plain), ok, detail)
    for tool, h, fastest, peer, r in copy_target_row(d) or []:
        row(f"copy of the 3-platform index between registries ({tool}) ≤ 1.2× the faster of "
            "skopeo and ctr", ratio_text(r, ratio(h, peer)), None if r is None else r <= 1.2,
            f"{tool} {fmt(h)} s vs {fastest} {fmt(peer)} s")
    return ["| target | measured | verdict | detail |", "|---|---|---|---|"] + rows


PULL_TOOLS = ["raw-pull", "raw-pull-fsync", "hoistd", "skopeo", "ctr", "dockerd"]
PULL_LABEL = {
    "raw-pull": "raw, 5 in parallel, one syncfs at the end",
    "raw-pull-fsync": "raw, 5 in parallel, an fsync per blob",
    "hoistd": "**hoistd** + docker CLI",
    "skopeo": "skopeo copy to an OCI layout",
    "ctr": "containerd `ctr content fetch` (no unpacking)",
    "dockerd": "dockerd 20.10 + docker CLI (unpacks)",
}
PULL_DAEMON = {"hoistd": "hoistd-pull", "ctr": "containerd", "dockerd": "dockerd"}


def pull_cpu(d, tool):
    """The daemon's CPU for a daemon, the client's (with children) for the others."""
    daemon = PULL_DAEMON.get(tool)
    if daemon:
        return d.daemon_value(tool, "big", "pull", "cpu_s", daemon)
    return d.median(tool, "big", "pull", lambda r: r["client_cpu_s"])


def pull_table(d):
    out = ["| tool | median s | MiB/s | × the faster raw | CPU s per GiB | detail |",
           "|---|---:|---:|---:|---:|---|"]
    size = d.blob_bytes("big")
    raws = [m for m in (d.median(t, "big", "pull") for t in ("raw-pull", "raw-pull-fsync")) if m]
    limit = min(raws) if raws else None
    for tool in PULL_TOOLS:
        m = d.median(tool, "big", "pull")
        if m is None:
            out.append(f"| {PULL_LABEL[tool]} | {d.why_missing(tool, 'big', 'pull')} | | | | |")
            continue
        cpu = pull_cpu(d, tool)
        per_gib = cpu / (size / GIB) if cpu is not None and size else None
        out.append(f"| {PULL_LABEL[tool]} | {fmt(m)} | {fmt(size / m / MIB if size else None)} | "
                   f"{fmt(ratio(m, limit))} | {fmt(per_gib)} | {d.spread(tool, 'big', 'pull')} |")
    return out


def pull_target_rows(d):
    """(name, measured, ok, detail) for the pull targets, or nothing without a hoistd pull."""
    h = d.median("hoistd", "big", "pull")
    if h is None:
        return []
    rows = []
    # The limit makes the blobs durable the cheapest correct way: whichever of the two raw
    # variants (one syncfs at the end, or an fsync per blob overlapping the other downloads)
    # was faster in this run.
    raws = {t: d.median(t, "big", "pull") for t in ("raw-pull", "raw-pull-fsync")
            if d.median(t, "big", "pull") is not None}
    if raws:
        raw = min(raws, key=raws.get)
        r = d.paired_ratio("hoistd", raw, "big", "pull")
        rows.append((f"1 GiB pull ≤ 1.15× the raw client ({PULL_LABEL[raw]})",
                     r, ratio(h, raws[raw]), None if r is None else r <= 1.15,
                     f"hoistd {fmt(h)} s vs {fmt(raws[raw])} s"))
    peers = {p: d.median(p, "big", "pull") for p in ("skopeo", "ctr", "dockerd")
             if d.median(p, "big", "pull") is not None}
    if peers:
        fastest = min(peers, key=peers.get)
        rows.append(("1 GiB pull faster than skopeo, ctr and dockerd 20.10",
                     None, peers[fastest] / h, all(h < v for v in peers.values()),
                     ", ".join(f"{p} {fmt(v)} s" for p, v in peers.items())))
    cpu = pull_cpu(d, "hoistd")
    size = d.blob_bytes("big")
    per_gib = cpu / (size / GIB) if cpu is not None and size else None
    rows.append(("hoistd CPU per GiB pulled ≤ 1.2 s", None, per_gib,
                 None if per_gib is None else per_gib <= 1.2,
                 "hoistd's CPU time during the pull (median), docker CLI not counted"))
    return rows


SAVE_TOOLS = ["baseline", "verify-baseline", "client-floor", "hoistd", "podman", "dockerd"]
SAVE_LABEL = {
    "baseline": "baseline: blob files to the same tar, fsync, rename (the limit)",
    "verify-baseline": "the baseline, plus sha256 of each blob",
    "client-floor": "docker CLI + archive-server, which only sends the finished archive "
                    "(the client's floor)",
    "hoistd": "**hoistd** + docker CLI",
    "podman": "podman compat API + docker CLI",
    "dockerd": "dockerd 20.10 + docker CLI",
}


# The server each save's daemon CPU is read from (the baselines have none).
SAVE_DAEMON = {**DAEMON, "client-floor": "archive-server"}


def save_target_rows(d, ratio_text):
    """(name, measured text, ok, detail) for the save targets, or nothing without a hoistd save."""
    h = d.median("hoistd", "save", "save")
    if h is None:
        return []
    rows = []
    base = d.median("baseline", "save", "save")
    r = d.paired_ratio("hoistd", "baseline", "save", "save")
    rows.append(("docker save of the 1 GiB image ≤ 1.2× the baseline", ratio_text(r, ratio(h, base)),
                 None if r is None else r <= 1.2, f"hoistd {fmt(h)} s vs baseline {fmt(base)} s"))
    peers = {p: d.median(p, "save", "save") for p in ("podman", "dockerd")
             if d.median(p, "save", "save") is not None}
    missing = [p for p in ("podman", "dockerd") if p not in peers]
    if peers:
        fastest = min(peers, key=peers.get)
        detail = ", ".join(f"{p} {fmt(v)} s" for p, v in peers.items())
        detail += "".join(f", {p} {d.why_missing(p, 'save', 'save')}" for p in missing)
        rows.append(("docker save of the 1 GiB image faster than podman and dockerd 20.10",
                     f"{peers[fastest] / h:.2f}× faster than {fastest}",
                     all(h < v for v in peers.values()), detail))
    else:
        rows.append(("docker save of the 1 GiB image faster than podman and dockerd 20.10", "–",
                     None, ", ".join(f"{p} {d.why_missing(p, 'save', 'save')}" for p in missing)))
    verify = d.median("verify-baseline", "save", "save")
    r = d.paired_ratio("hoistd", "verify-baseline", "save", "save")
    rows.append(("docker save of the 1 GiB image against the baseline that also hashes each blob",
                 ratio_text(r, ratio(h, verify)), None,
                 f"hoistd {fmt(h)} s vs {fmt(verify)} s"))
    floor = d.median("client-floor", "save", "save")
    if floor is not None:
        r = d.paired_ratio("client-floor", "baseline", "save", "save")
        rows.append(("the docker CLI's own floor (a server that only sends the finished archive) "
                     "against the baseline", ratio_text(r, ratio(floor, base)), None,
                     f"floor {fmt(floor)} s vs baseline {fmt(base)} s"))
        r = d.paired_ratio("hoistd", "client-floor", "save", "save")
        rows.append(("docker save of the 1 GiB image against the docker CLI's own floor",
                     ratio_text(r, ratio(h, floor)), None,
                     f"hoistd {fmt(h)} s vs floor {fmt(floor)} s"))
    return rows


def save_table(d):
    out = ["| tool | median s | MiB/s | × baseline | daemon CPU s | client CPU s | "
           "CPU s per GiB (daemon / client) | detail |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    size = d.meta.get("images", {}).get("big", {}).get("archive_bytes")
    base = d.median("baseline", "save", "save")
    for tool in SAVE_TOOLS:
        m = d.median(tool, "save", "save")
        if m is None:
            out.append(f"| {SAVE_LABEL[tool]} | {d.why_missing(tool, 'save', 'save')} | | | | | | |")
            continue
        daemon = d.daemon_value(tool, "save", "save", "cpu_s", SAVE_DAEMON.get(tool))
        client = d.median(tool, "save", "save", lambda r: r["client_cpu_s"])
        gib = size / GIB if size else None
        per_gib = (f"{fmt(daemon / gib) if daemon is not None else '–'} / "
                   f"{fmt(client / gib) if client is not None else '–'}") if gib else "–"
        rss = d.daemon_max(tool, "save", "save", "peak_rss_kib", SAVE_DAEMON.get(tool))
        detail = d.spread(tool, "save", "save")
        if rss:
            detail += f", daemon peak RSS {rss / 1024:.0f} MiB"
        out.append(f"| {SAVE_LABEL[tool]} | {fmt(m)} | {fmt(size / m / MIB if size else None)} | "
                   f"{fmt(ratio(m, base))} | {fmt(daemon)} | {fmt(client)} | {per_gib} | {detail} |")
    return out


TLS_TOOLS = ["raw-tls", "hoistd", "skopeo", "ctr", "podman", "dockerd"]
TLS_LABEL = {
    "raw-tls": "raw TLS client, 5 in parallel (Python `ssl`; the limit)",
    "hoistd": "**hoistd** + docker CLI",
    "skopeo": "skopeo copy",
    "ctr": "containerd ctr push",
    "podman": "podman compat API + docker CLI",
    "dockerd": "dockerd 20.10 + docker CLI",
}
TLS_IMAGES = ["big", "small"]
TLS_CPU_TARGET = {"big": 0.5, "small": 1.0}  # hoistd CPU-s per GiB


def tls_cpu(d, tool, image):
    """The daemon's CPU for a daemon, the client's (with children) for the others."""
    daemon = DAEMON.get(tool)
    if daemon:
        return d.daemon_value(tool, f"tls-{image}", "first", "cpu_s", daemon)
    return d.median(tool, f"tls-{image}", "first", lambda r: r["client_cpu_s"])


def tls_table(d):
    out = ["| tool | image | median s | MiB/s | × the raw TLS client | CPU s per GiB | "
           "registry CPU s | pushed digest | detail |",
           "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for image in TLS_IMAGES:
        key = f"tls-{image}"
        size = d.blob_bytes(image)
        limit = d.median("raw-tls", key, "first")
        original = d.meta.get("images", {}).get(image, {}).get("digest")
        for tool in TLS_TOOLS:
            m = d.median(tool, key, "first")
            if m is None:
                out.append(f"| {TLS_LABEL[tool]} | {image} | {d.why_missing(tool, key, 'first')} "
                           "| | | | | | |")
                continue
            cpu = tls_cpu(d, tool, image)
            per_gib = cpu / (size / GIB) if cpu is not None and size else None
            registry_cpu = d.daemon_value(tool, key, "first", "cpu_s", "registry-tls")
            seen = d.digests.get((tool, key), set()) - {""}
            pushed = "–" if not seen else "original" if seen == {original} else "rewritten"
            out.append(f"| {TLS_LABEL[tool]} | {image} | {fmt(m)} | "
                       f"{fmt(size / m / MIB if size else None)} | {fmt(ratio(m, limit))} | "
                       f"{fmt(per_gib)} | {fmt(registry_cpu)} | {pushed} | {d.spread(tool, key, 'first')} |")
    return out


def tls_target_rows(d):
    """(name, paired, plain, ok, detail) for the TLS targets, or nothing without a hoistd TLS push."""
    rows = []
    for image in TLS_IMAGES:
        key = f"tls-{image}"
        h = d.median("hoistd", key, "first")
        if h is None:
            continue
        size = d.blob_bytes(image)
        cpu = tls_cpu(d, "hoistd", image)
        per_gib = cpu / (size / GIB) if cpu is not None and size else None
        limit = TLS_CPU_TARGET[image]
        rows.append((f"TLS push of {IMAGE_LABEL[image]}: hoistd CPU per GiB ≤ {limit:.1f} s", None,
                     per_gib, None if per_gib is None else per_gib <= limit,
                     "hoistd's CPU time during the first push to the TLS registry (median)"))
        raw = d.median("raw-tls", key, "first")
        if raw is not None:
            r = d.paired_ratio("hoistd", "raw-tls", key, "first")
            rows.append((f"TLS push of {IMAGE_LABEL[image]} ≤ 1.10× the raw TLS client", r,
                         ratio(h, raw), None if r is None else r <= 1.10,
                         f"hoistd {fmt(h)} s vs {fmt(raw)} s"))
        peers = {p: d.median(p, key, "first") for p in PEERS if d.median(p, key, "first") is not None}
        if peers:
            fastest = min(peers, key=peers.get)
            rows.append((f"TLS push of {IMAGE_LABEL[image]} faster than every peer", None,
                         peers[fastest] / h, all(h < v for v in peers.values()),
                         ", ".join(f"{p} {fmt(v)} s" for p, v in peers.items())))
    return rows


SMALL_LOAD_LABEL = {
    "hoistd": "`docker load` of layers10k.tar into a fresh hoistd",
    "baseline-fsync": "baseline: read, sha256, write, an fsync per blob, rename",
    "baseline-syncfs": "baseline: read, sha256, write, one syncfs at the end, renames",
}


def per_blob_ms(d, tool, image, kind):
    """Median milliseconds per blob of the image (its layers and config)."""
    m = d.median(tool, image, kind)
    blobs = d.meta.get("images", {}).get(image, {}).get("blob_count")
    return m / blobs * 1000 if m is not None and blobs else None


def small_blob_target_rows(d):
    """(name, paired, plain, ok, detail) for the many-small-blobs targets."""
    rows = []
    h = d.median("hoistd", "tiny", "first")
    raw = d.median("raw-par", "tiny", "first")
    if h is not None and raw is not None:
        r = d.paired_ratio("hoistd", "raw-par", "tiny", "first")
        rows.append(("1,000 × 4 KiB first push: per-blob time ≤ 1.2× the raw 5-parallel client's",
                     r, ratio(h, raw), None if r is None else r <= 1.2,
                     f"hoistd {fmt(per_blob_ms(d, 'hoistd', 'tiny', 'first'))} ms per blob "
                     f"({fmt(h)} s) vs {fmt(per_blob_ms(d, 'raw-par', 'tiny', 'first'))} ms ({fmt(raw)} s)"))
    h = d.median("hoistd", "layers10k", "load")
    # The baseline makes the blobs durable the cheapest correct way: whichever of its two
    # variants was faster in this run.
    bases = {t: d.median(t, "layers10k", "load") for t in ("baseline-fsync", "baseline-syncfs")
             if d.median(t, "layers10k", "load") is not None}
    if h is not None and bases:
        base = min(bases, key=bases.get)
        r = d.paired_ratio("hoistd", base, "layers10k", "load")
        rows.append((f"docker load of 10,000 × 4 KiB layers ≤ 2× the baseline ({base})",
                     r, ratio(h, bases[base]), None if r is None else r <= 2.0,
                     f"hoistd {fmt(h)} s vs {fmt(bases[base])} s; "
                     f"{fmt(per_blob_ms(d, 'hoistd', 'layers10k', 'load'), 3)} ms per blob"))
    return rows


def small_blobs_table(d):
    out = ["| measurement | median s | ms per blob | CPU s | detail |", "|---|---:|---:|---:|---|"]
    for tool, label in (("hoistd", "first push of tiny through hoistd + docker CLI"),
                        ("raw-par", "first push of tiny by the raw client, 5 in parallel (the limit)")):
        m = d.median(tool, "tiny", "first")
        if m is None:
            out.append(f"| {label} | {d.why_missing(tool, 'tiny', 'first')} | | | |")
            continue
        cpu = (d.daemon_value("hoistd", "tiny", "first", "cpu_s", "hoistd-tiny") if tool == "hoistd"
               else d.median(tool, "tiny", "first", lambda r: r["client_cpu_s"]))
        registry = d.daemon_value(tool, "tiny", "first", "cpu_s", "registry")
        out.append(f"| {label} | {fmt(m)} | {fmt(per_blob_ms(d, tool, 'tiny', 'first'), 3)} | "
                   f"{fmt(cpu)} | {d.spread(tool, 'tiny', 'first')}, registry CPU {fmt(registry)} s |")
    for tool, label in SMALL_LOAD_LABEL.items():
        m = d.median(tool, "layers10k", "load")
        if m is None:
            out.append(f"| {label} | {d.why_missing(tool, 'layers10k', 'load')} | | | |")
            continue
        cpu = (d.daemon_value("hoistd", "layers10k", "load", "cpu_s", "hoistd-load") if tool == "hoistd"
               else d.median(tool, "layers10k", "load", lambda r: r["client_cpu_s"]))
        out.append(f"| {label} | {fmt(m)} | {fmt(per_blob_ms(d, tool, 'layers10k', 'load'), 3)} | "
                   f"{fmt(cpu)} | {d.spread(tool, 'layers10k', 'load')} |")
    return out


COPY_TOOLS = ["hoistd-all", "hoistd-relay", "skopeo", "ctr"]
COPY_LABEL = {
    "hoistd-all": "**hoistd**: `docker pull --platform all`, tag, push",
    "hoistd-relay": "**hoistd**: `docker pull` (host platform), tag, push completing from the origin",
    "skopeo": "`skopeo copy --all` registry to registry",
    "ctr": "containerd: `ctr images pull --all-platforms`, `ctr images push`",
}
COPY_DAEMON = {"hoistd-all": "hoistd-copy", "hoistd-relay": "hoistd-copy", "ctr": "containerd"}


def copy_target_row(d):
    """hoistd's copy against the faster of skopeo and ctr; None when either side is missing."""
    peers = {p: d.median(p, "copy", "copy") for p in ("skopeo", "ctr")
             if d.median(p, "copy", "copy") is not None}
    if not peers:
        return None
    fastest = min(peers, key=peers.get)
    rows = []
    for tool in ("hoistd-all", "hoistd-relay"):
        h = d.median(tool, "copy", "copy")
        r = d.paired_ratio(tool, fastest, "copy", "copy")
        rows.append((tool, h, fastest, peers[fastest], r))
    return rows


def copy_table(d):
    out = ["| tool | median s | MiB/s | daemon CPU s | index digest as the source's | detail |",
           "|---|---:|---:|---:|---|---|"]
    size = d.blob_bytes("multi")
    source = d.meta.get("images", {}).get("multi", {}).get("digest")
    for tool in COPY_TOOLS:
        m = d.median(tool, "copy", "copy")
        if m is None:
            out.append(f"| {COPY_LABEL[tool]} | {d.why_missing(tool, 'copy', 'copy')} | | | | |")
            continue
        daemon = COPY_DAEMON.get(tool)
        cpu = d.daemon_value(tool, "copy", "copy", "cpu_s", daemon) if daemon else None
        got = d.digests.get((tool, "copy"), set())
        same = "yes" if got == {source} else f"no: {', '.join(sorted(got))}"
        out.append(f"| {COPY_LABEL[tool]} | {fmt(m)} | {fmt(size / m / MIB if size else None)} | "
                   f"{fmt(cpu)} | {same} | {d.spread(tool, 'copy', 'copy')} |")
    return out


def load_and_concurrency(d):
    out = ["| measurement | median s | MiB/s | detail |", "|---|---:|---:|---|"]
    archive = d.meta.get("images", {}).get("big", {}).get("archive_bytes")
    for tool, label in (("hoistd", "`docker load` of big.tar into a fresh hoistd"),
                        ("baseline", "baseline: read, sha256 and write (fsync) every blob"),
                        ("verify-baseline", "verify baseline: the same, plus decompress and sha256 each layer")):
        m = d.median(tool, "big", "load")
        detail = f"n={d.count(tool, 'big', 'load')}"
        if tool == "hoistd":
            cpu = d.daemon_value("hoistd", "big", "load", "cpu_s", "hoistd-load")
            rss = d.daemon_max("hoistd", "big", "load", "peak_rss_kib", "hoistd-load")
            detail += f", hoistd CPU {fmt(cpu)} s, peak RSS {fmt(rss / 1024 if rss else None)} MiB"
        else:
            detail += f", CPU {fmt(d.median(tool, 'big', 'load', lambda r: r['client_cpu_s']))} s"
        out.append(f"| {label} | {fmt(m)} | {fmt(archive / m / MIB if m and archive else None)} | {detail} |")
    size = d.blob_bytes("conc8")
    for tool, label in (("hoistd", "8 concurrent `docker push` through hoistd (8 × 128 MiB)"),
                        ("raw-par", "raw client, the same blobs 5 at a time")):
        m = d.median(tool, "conc8", "concurrent")
        detail = f"n={d.count(tool, 'conc8', 'concurrent')}"
        if tool == "hoistd":
            cpu = d.daemon_value("hoistd", "conc8", "concurrent", "cpu_s")
            rss = d.daemon_max("hoistd", "conc8", "concurrent", "peak_rss_kib")
            detail += f", hoistd CPU {fmt(cpu)} s, peak RSS {fmt(rss / 1024 if rss else None)} MiB"
        out.append(f"| {label} | {fmt(m)} | {fmt(size / m / MIB if m and size else None)} | {detail} |")
    for kind, label in (("to-20-repositories", "20 concurrent `docker push` of big to 20 repositories"),
                        ("to-1-repository", "20 concurrent `docker push` of big to one repository")):
        m = d.median("hoistd", "fanout20", kind)
        if m is None:
            continue
        cpu = d.daemon_value("hoistd", "fanout20", kind, "cpu_s")
        out.append(f"| {label} | {fmt(m)} | {fmt(d.blob_bytes('big') / m / MIB if d.blob_bytes('big') else None)} | "
                   f"n={d.count('hoistd', 'fanout20', kind)}, hoistd CPU {fmt(cpu)} s |")
    big_limit = d.median("raw-par", "big", "first")
    if big_limit and d.blob_bytes("big"):
        out.append(f"| for reference: the raw 5-parallel 1 GiB first push | {fmt(big_limit)} | "
                   f"{d.blob_bytes('big') / big_limit / MIB:.0f} | |")
    return out


def chart(d, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    colors = {"hoistd": "#d62728", "raw-par": "#7f7f7f", "raw-seq": "#b0b0b0", "curl": "#c7c7c7",
              "skopeo": "#1f77b4", "ctr": "#2ca02c", "podman": "#9467bd", "dockerd": "#8c564b"}
    for row, kind in enumerate(("first", "repush")):
        for col, image in enumerate(IMAGES):
            ax = axes[row][col]
            tools = [t for t in TOOLS if d.median(t, image, kind) is not None]
            values = [d.median(t, image, kind) for t in tools]
            bars = ax.bar(range(len(tools)), values, color=[colors[t] for t in tools])
            for bar, value in zip(bars, values):
                ax.annotate(fmt(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
            ax.set_xticks(range(len(tools)), tools, rotation=30, fontsize=8)
            limit = d.median("raw-par", image, "first")
            if kind == "first" and limit:
                ax.axhline(limit, color="#555", linestyle="--", linewidth=0.8)
            ax.set_title(f"{'first push' if kind == 'first' else 're-push'}: {IMAGE_LABEL[image]}",
                         fontsize=10)
            ax.set_ylabel("seconds (median)")
            if not tools:
                ax.text(0.5, 0.5, "not measured in this run", transform=ax.transAxes,
                        ha="center", va="center", color="#555")
                ax.set_yticks([])
                continue
            missing = [f"{t} ({d.why_missing(t, image, kind)})" for t in TOOLS
                       if t not in tools and not (kind == "repush" and t == "curl")]
            ax.set_ylim(0, max(values) * 1.12)
            if missing:
                ax.set_xlabel("not shown: " + ", ".join(missing), fontsize=7, color="#555")
    fig.suptitle("docker push and peers to a local registry on tmpfs (lower is better; "
                 "dashed: raw 5-parallel limit)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def other_cpu_sentence(records, cpus):
    """How busy the machine was with anything but what a measurement measured."""
    shares = []
    for r in records:
        machine = r.get("machine_busy_cpu_s")
        if not isinstance(machine, (int, float)) or str(r.get("kind", "")).startswith("setup"):
            continue
        measured = (r.get("client_cpu_s") or 0) + sum(
            (d.get("cpu_s") or 0) for d in r.get("daemons", {}).values())
        if r.get("seconds"):
            shares.append(max(machine - measured, 0) / (r["seconds"] * cpus))
    if not shares:
        return ""
    return (f" CPU used during measurements by anything but the tool, its daemon and the registry "
            f"(other programs, and kernel work not charged to a process such as loopback "
            f"networking): median {100 * statistics.median(shares):.0f}%, at most "
            f"{100 * max(shares):.0f}% of the machine.")


def daemon_cpu_sentence(records):
    """Where the daemons' CPU figures come from (see measure.rs)."""
    sources = {d.get("cpu_source", "ticks") for r in records
               for d in r.get("daemons", {}).values() if d.get("cpu_s") is not None}
    if sources == {"cgroup"}:
        return ("Daemon CPU: each daemon's own cgroup (`cpu.stat`, every thread it ever had, to "
                "the microsecond).")
    if sources == {"ticks"}:
        return ("Daemon CPU: utime+stime from `/proc/PID/stat`, in clock ticks (10 ms where "
                "`USER_HZ` is 100): figures of a few hundredths of a second are coarse.")
    return ("Daemon CPU: from each daemon's own cgroup where it could be made, otherwise in clock "
            "ticks of `/proc/PID/stat` (`cpu_source` in raw.json says which).")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw", required=True)
    parser.add_argument("--na", required=True)
    parser.add_argument("--digests", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--store", help="store-tag's output (the store phase)")
    args = parser.parse_args()
    records = load_jsonl(args.raw)
    na = load_jsonl(args.na)
    with open(args.meta) as f:
        meta = json.load(f)
    d = Data(records, na, meta, load_jsonl(args.digests))
    os.makedirs(args.out, exist_ok=True)

    with open(os.path.join(args.out, "raw.json"), "w") as f:
        json.dump({"meta": meta, "not_applicable": na, "measurements": records,
                   "pushed_digests": load_jsonl(args.digests)}, f, indent=1)
    has_chart = chart(d, os.path.join(args.out, "push-times.png"))

    loads = meta.get("loadavg", {})
    start_load = float(loads.get("start", ["0"])[0])
    run_loads = [r["loadavg"] for r in records if isinstance(r.get("loadavg"), (int, float))]
    cpus = meta.get("cpus", 2)
    images = meta.get("images", {})
    lines = [
        "# hoist push benchmark",
        "",
        f"Run {meta.get('date', '?')} by `bench/run` on {cpus} cores ({meta.get('cpu_model', '?')}), "
        f"{meta.get('mem_gib', '?')} GiB, Linux {meta.get('kernel', '?')}; hoist {meta.get('hoist_commit', '?')}"
        f"{' with uncommitted changes in crates/' if meta.get('hoist_dirty') else ''}. "
        f"Registry: CNCF distribution on 127.0.0.1, storage on tmpfs, emptied and restarted before "
        f"every first push. Medians of {meta.get('rounds_big_first')} interleaved rounds for the 1 GiB "
        f"first push and `docker load`, {meta.get('rounds')} for everything else; tools in a rotating order.",
        "",
        f"Load average (1 min) at the start: {start_load:.2f}; at the start of measurements, where it "
        f"includes the benchmark's own previous pushes: {min(run_loads, default=0):.2f}–"
        f"{max(run_loads, default=0):.2f}." + other_cpu_sentence(records, cpus),
        "",
    ]
    if meta.get("guest_memory"):
        lines += [f"Memory: {meta['guest_memory']} (see bench/README.md).", ""]
    lines += [daemon_cpu_sentence(records), ""]
    lines += ["## Targets", "",
              "Each ratio is the median over rounds of the two tools' ratio within a round (they run "
              "minutes apart, while the machine's speed drifts between rounds); the ratio of the "
              "two medians follows in parentheses.", ""] + targets(d) + [""]
    lines += ["## First push", "",
              "Median seconds (MiB/s of blob bytes) and the ratio to the raw 5-parallel limit.", ""]
    lines += first_push_table(d) + [""]
    faster = [i for i in IMAGES if d.median("raw-seq", i, "first") and d.median("raw-par", i, "first")
              and d.median("raw-seq", i, "first") < d.median("raw-par", i, "first")]
    if faster:
        lines += [f"The raw client was faster sequentially than 5 in parallel for "
                  f"{', '.join(faster)}: on 2 cores the registry's own CPU (SHA-256 without SHA-NI, "
                  f"see the CPU table) is the bottleneck, so parallel uploads mostly compete for it. "
                  f"The limit stays the 5-parallel figure, as the targets define it.", ""]
    if has_chart:
        lines += ["![push times](push-times.png)", ""]
    lines += ["## Re-push (everything already in the registry)", "", "Median seconds.", ""]
    lines += repush_table(d) + [""]
    lines += ["## hoistd against each tool", "",
              "The tool's median divided by hoistd's: above 1× hoistd is faster.", ""]
    lines += versus_table(d) + [""]
    lines += ["## CPU and memory of the first push", "",
              "Medians per push. Daemon: hoistd, containerd (for ctr), podman's service or dockerd; "
              "client: docker CLI, skopeo, ctr, the raw client or curl (with children). Peak RSS is "
              "the daemon's VmHWM, reset before each push. CPU per GiB uses the image's blob bytes.", ""]
    lines += cost_table(d) + [""]
    lines += ["## What the registry received", "",
              "The digest of the pushed tag after each first push, against the generated image's.", ""]
    lines += digests_table(d) + [""]
    lines += ["## docker load and concurrent pushes", ""] + load_and_concurrency(d) + [""]
    def section(measured, title, intro, table):
        """A phase's section, when the run measured it: heading, what was done, its table."""
        return [f"## {title}", "", intro, ""] + table(d) + [""] if measured else []

    lines += section(
        any(d.count(tool, "big", "pull") for tool in PULL_TOOLS), "Pull",
        "big (1 GiB, 5 layers) pulled from the registry into an empty store on the "
        "same disk (bench/work), interleaved. CPU: the daemon's for hoistd, containerd "
        "and dockerd, the client's (with children) for the others.", pull_table)
    lines += section(
        any(d.count(tool, "save", "save") for tool in SAVE_TOOLS), "Save",
        "`docker save -o` of big (1 GiB, 5 layers) to a file on the daemons' disk "
        "(bench/work), removed after each save, `sync` before each; interleaved. The "
        "docker CLI writes a temporary file beside the output, fsyncs it and renames "
        "it; the baselines write the same tar from hoistd's blob files the same way. "
        "The client's floor is the same docker CLI against archive-server, which answers "
        "with the finished archive (written by the baseline beforehand) by sendfile under a "
        "Content-Length and does nothing else: no daemon's save through this CLI can be "
        "faster. Client CPU is the docker CLI's (or the baseline's); MiB/s of the archive's "
        "bytes.", save_table)
    lines += section(
        any(d.count(tool, "copy", "copy") for tool in COPY_TOOLS), "Copying an index between registries",
        "The multi index (3 platforms × 100 MiB) copied from a second registry (the "
        "origin, on tmpfs too) to the target registry, emptied before each copy; each "
        "daemon starts every copy with an empty store. Medians; MiB/s of the index's "
        "blob bytes; daemon CPU is hoistd's or containerd's (the registries' is not "
        "counted).", copy_table)
    lines += section(
        any(d.count(tool, f"tls-{image}", "first") for tool in TLS_TOOLS for image in TLS_IMAGES),
        "Push over TLS",
        "First pushes of big and small to a second registry serving HTTPS (its own "
        "self-signed certificate, trusted by every tool through certs.d or a CA flag; "
        "storage on tmpfs, emptied and restarted before each push), interleaved. "
        "CPU: the daemon's for hoistd, containerd, podman and dockerd, the client's (with "
        "children) for skopeo and the raw client. Kernel TLS was not available on the "
        "bench machine: every tool encrypts in user space.", tls_table)
    lines += section(
        d.count("hoistd", "tiny", "first") or d.count("hoistd", "layers10k", "load"), "Many small blobs",
        "tiny (1,000 layers of 4 KiB) pushed to an emptied registry, hoistd each round by a "
        "fresh daemon that has just loaded it; layers10k (10,000 such layers) loaded into a "
        "fresh hoistd and by the baselines onto the same disk. CPU: hoistd's for hoistd, "
        "the client's otherwise.", small_blobs_table)
    store = load_jsonl(args.store) if args.store and os.path.exists(args.store) else []
    if store:
        lines += ["## Metadata store", "",
                  "`store-tag`: single tags and untags, each a durable commit, in a store of "
                  f"{store[0]['records']:,} image records ({store[0]['database_bytes'] / 2**20:.0f} MiB "
                  "database). Target: a tag ≤ 5 ms (median).", "",
                  "| operation | median ms | p95 ms | max ms | target |", "|---|---:|---:|---:|---|"]
        for op in ("tag", "untag"):
            ms = store[0][f"{op}_ms"]
            verdict = ("PASS" if ms["median"] <= 5 else "FAIL") if op == "tag" else ""
            lines.append(f"| {op} | {ms['median']:.2f} | {ms['p95']:.2f} | {ms['max']:.2f} | {verdict} |")
        lines += [""]
    lines += ["## Images", "", "| image | blobs | blob bytes | archive bytes | layers | platforms |",
              "|---|---:|---:|---:|---:|---|"]
    for name in ["big", "small", "multi", "tiny", "layers10k"] + sorted(k for k in images if k.startswith("conc-"))[:1]:
        if name in images:
            i = images[name]
            label = name if not name.startswith("conc-") else "conc-0 … conc-7 (each)"
            lines.append(f"| {label} | {i['blob_count']} | {i['blob_bytes']:,} | {i['archive_bytes']:,} | "
                         f"{i['layers']} | {', '.join(i['platforms'])} |")
    lines += ["", "Random, incompressible content; gzip streams of stored blocks (the sizes zlib's "
              "level 1 gives). Archives hold an OCI layout plus docker's manifest.json. podman "
              "and dockerd recompress layers on push, so they send other blobs of about the same size.",
              ""]
    notes = []
    for (tool, image), reason in sorted(d.na.items()):
        notes.append(f"- {tool}: n/a for {image}: {reason}")
    for (tool, image, kind), runs in sorted(d.failed.items()):
        if kind == "setup-load":
            continue
        notes.append(f"- {tool} {kind} {image}: {len(runs)} run(s) failed (exit "
                     f"{', '.join(str(r['exit']) for r in runs)}); logs in bench/work/run/logs/"
                     f"{tool}-{image}-{kind}.log")
    if notes:
        lines += ["## Not measured, failures", ""] + notes + [""]
    lines += ["## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in meta.get("versions", {}).items()]
    lines += ["", "Raw measurements: [raw.json](raw.json). Reproduce with `bench/run`.", ""]
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
