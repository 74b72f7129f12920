"""The issue-11 table from one scripts/bench.sh run.  usage: bench_table.py RESULTS_DIR

Reads what the peer's run_side_by_side.sh wrote (SYSTEM_WORKLOAD.json, .cpu.json, .mem.json,
.warmup.json for peer / rpa-ml and one / thousand) and what scripts/bench.sh wrote for rpa-ml on a
PostgreSQL backend (pg_*.json), and prints one Markdown table: peer, rpa-ml, rpa-ml / peer.
A missing file leaves its cells as "n/a"; nothing here measures anything.
"""
import json
import os
import re
import sys

D = sys.argv[1] if len(sys.argv) > 1 else "results"


def load(name):
    p = os.path.join(D, name)
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def text(name):
    try:
        with open(os.path.join(D, name)) as f:
            return f.read()
    except OSError:
        return ""


def run(system, wl):
    return {k: load(f"{system}_{wl}{s}.json") for k, s in
            (("bench", ""), ("cpu", ".cpu"), ("mem", ".mem"), ("warmup", ".warmup"))}


def per_job_ms(cpu, jobs, pick):
    if not cpu or not jobs:
        return None
    roots = cpu.get("roots_cpu_s", {})
    return sum(v for k, v in roots.items() if pick(k)) * 1e3 / jobs


def worker_procs(mem):
    """Each worker's processes that run jobs: a prefork pool's children, else the process itself."""
    out = []
    for name, tree in (mem or {}).items():
        if not name.startswith("worker"):
            continue
        procs = tree.get("procs", [])
        kids = procs[1:] if len(procs) > 1 else procs  # procs.py lists the root first
        out.extend(kids)
    return out


def rss_range(procs, key):
    vals = [p[key] for p in procs if p.get(key) is not None]
    if not vals:
        return None, "n/a"
    lo, hi = min(vals), max(vals)
    shown = f"{hi:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"
    return hi, f"{shown} MiB x {len(vals)}"


def num(v, unit=""):
    if v is None:
        return "n/a"
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 1000 else 0
    return f"{v:.{digits}f}{unit}"


def ratio(peer, rpa, higher_is_better, words):
    """rpa-ml against the peer, in the issue's words: 3.0x, 4.3x less, 1.7x slower."""
    if not peer or not rpa:
        return ""
    if higher_is_better:
        return f"{rpa / peer:.1f}x"
    better, worse = words
    return f"{peer / rpa:.1f}x {better}" if rpa <= peer else f"{rpa / peer:.1f}x {worse}"


LESS = ("less", "more")
FASTER = ("faster", "slower")

peer_one, rpa_one = run("peer", "one"), run("rpa-ml", "one")
peer_k, rpa_k = run("peer", "thousand"), run("rpa-ml", "thousand")
pg = dict(bench=load("pg_thousand.bench.json"), cpu=load("pg_thousand.cpu.json"), mem=load("pg_thousand.mem.json"),
          idle=load("pg_thousand.idle.json"), idle_mem=load("pg_idle_mem.json"))


def jobs(r):
    return (r["bench"] or {}).get("jobs")


def jobs_s(r):
    return (r["bench"] or {}).get("jobs_per_s")


def worker_ms(r):
    return per_job_ms(r["cpu"], jobs(r), lambda k: k.startswith("worker"))


def pg_ms(r):
    return per_job_ms(r["cpu"], jobs(r), lambda k: k == "pg")


def warm(r, key):
    return (r["warmup"] or {}).get(key)


rows = []  # (figure, peer value, peer text, rpa value, rpa text, ratio)


def row(figure, p, r, unit, better=None, words=None):
    rows.append((figure, num(p, unit), num(r, unit), ratio(p, r, better is True, words) if better is not None else ""))


row("1-project jobs/s end to end", jobs_s(peer_one), jobs_s(rpa_one), "", True)
row("1-project worker CPU per job", worker_ms(peer_one), worker_ms(rpa_one), " ms", False, LESS)
row("1-project idle round trip (client: submit → result)", warm(peer_one, "idle_roundtrip_p50_ms"),
    warm(rpa_one, "idle_roundtrip_p50_ms"), " ms", False, FASTER)
row("1,000-project jobs/s end to end", jobs_s(peer_k), jobs_s(rpa_k), "", True)
row("1,000-project worker CPU per job", worker_ms(peer_k), worker_ms(rpa_k), " ms", False, LESS)
row("1,000-project job on an idle queue (created → finished)", warm(peer_k, "idle_e2e_p50_ms"),
    warm(rpa_k, "idle_e2e_p50_ms"), " ms", False, FASTER)
row("PostgreSQL CPU per 1,000-project job", pg_ms(peer_k), pg_ms(rpa_k), " ms", False, LESS)
for label, p, r in (("1-project", peer_one, rpa_one), ("1,000-project", peer_k, rpa_k)):
    ph, pt = rss_range(worker_procs(p["mem"]), "peak_rss_mib")
    rh, rt = rss_range(worker_procs(r["mem"]), "peak_rss_mib")
    rows.append((f"worker peak RSS (VmHWM), {label} load, per worker process", pt, rt, ratio(ph, rh, False, LESS)))
ph, pt = rss_range(worker_procs(peer_one["mem"]), "rss_mib")
rh, rt = rss_range(worker_procs(rpa_one["mem"]), "rss_mib")
rows.append(("idle worker RSS, models loaded (after the 1-project run; rpa-ml: completion_time only)", pt, rt,
             ratio(ph, rh, False, LESS)))

# rpa-ml alone on a PostgreSQL backend; the ratio is against the peer's SQLite-backend figure.
pgb = (pg["bench"] or {}).get("end_to_end", {})
pg_jobs = pgb.get("jobs")
pg_worker = per_job_ms(pg["cpu"], pg_jobs, lambda k: k.startswith("worker"))
pg_pg = per_job_ms(pg["cpu"], pg_jobs, lambda k: k == "pg")
pg_idle = ((pg["idle"] or {}).get("idle_latency") or {}).get("p50_ms")
tag = "PG backend: "
rows.append((tag + "1,000-project jobs/s end to end", "", num(pgb.get("jobs_per_s")),
             ratio(jobs_s(peer_k), pgb.get("jobs_per_s"), True, None)))
rows.append((tag + "1,000-project worker CPU per job", "", num(pg_worker, " ms"), ratio(worker_ms(peer_k), pg_worker, False, LESS)))
rows.append((tag + "1,000-project job on an idle queue (created → finished)", "", num(pg_idle, " ms"),
             ratio(warm(peer_k, "idle_e2e_p50_ms"), pg_idle, False, FASTER)))
rows.append((tag + "PostgreSQL CPU per 1,000-project job (store + backend reads)", "", num(pg_pg, " ms"),
             ratio(pg_ms(peer_k), pg_pg, False, LESS)))
rh, rt = rss_range(worker_procs(pg["mem"]), "peak_rss_mib")
rows.append((tag + "worker peak RSS (VmHWM), 1,000-project load, per worker process", "", rt,
             ratio(rss_range(worker_procs(peer_k["mem"]), "peak_rss_mib")[0], rh, False, LESS)))
idle_workers = [p for p in (pg["idle_mem"] or {}).get("processes", []) if p.get("role", "").startswith("worker")]
rh, rt = rss_range(idle_workers, "idle_rss_mib")
rows.append((tag + "idle worker RSS, three production models loaded, before any load", "", rt, ""))

print("| figure | Python peer (FastAPI + Celery + scikit-learn) | rpa-ml | rpa-ml / peer |")
print("|---|---|---|---|")
for figure, p, r, q in rows:
    print(f"| {figure} | {p} | {r} | {q} |")

# What the figures rest on: workload sizes, distinct projects, failures, foreign load.
print()
settings = load("settings.json")
if settings:
    print("settings:", json.dumps(settings))
for name, r in (("peer 1-project", peer_one), ("rpa-ml 1-project", rpa_one), ("peer 1,000-project", peer_k),
                ("rpa-ml 1,000-project", rpa_k), ("rpa-ml PG-backend 1,000-project", None)):
    if r is None:
        b, cpu = pg["bench"], pg["cpu"]
        e = (b or {}).get("end_to_end", {})
        n, bad = e.get("jobs"), e.get("not_succeeded")
        distinct = (b or {}).get("distinct_projects_per_job")
        answered = e.get("min_distinct_answered")
    else:
        b, cpu = r["bench"], r["cpu"]
        n, bad = (b or {}).get("jobs"), (b or {}).get("not_succeeded")
        wl = "one" if "1-project" == name.split()[-1] else "thousand"
        sysname = name.split()[0]
        m = re.search(r"projects: (\d+) distinct per job", text(f"{sysname}_{wl}.rustbench.txt"))
        distinct = int(m.group(1)) if m else None
        m = re.search(r"distinct projects answered per job: min (\d+)", text(f"{sysname}_{wl}.rustbench.txt"))
        answered = int(m.group(1)) if m else None
    if not b:
        print(f"{name}: not measured")
        continue
    print(f"{name}: {n} jobs, {distinct if distinct is not None else '?'} distinct projects per job"
          f"{'' if answered is None else f' (fewest answered by a job: {answered})'}, {bad} not succeeded, "
          f"foreign load {(cpu or {}).get('foreign_cores', '?')} cores")
cmp = load("compare_predictions.json")
if cmp:
    print("prediction spot-check (peer vs rpa-ml, last side-by-side workload):", json.dumps(cmp))
print("""
PG backend rows: rpa-ml alone on a PostgreSQL backend (the same demo data: size and seed, as of the
day of the run), same api / workers / client settings; their ratio is against the peer's figure on
SQLite above (the peer reads SQLite only).
jobs/s: succeeded jobs over the server timestamps (first created_at to last finished_at). CPU per job:
utime+stime of each process tree over the measured jobs (cpuacct.py; worker = all worker processes,
Celery's main and prefork children for the peer; PostgreSQL = the whole server, other tenants
included). Idle figures: p50 of sequential jobs on an empty queue. RSS: kernel VmHWM (peak) and
VmRSS (now) of each worker process, in MiB; for the peer its Celery prefork children.
Compare runs only at a foreign load near 0.""")
