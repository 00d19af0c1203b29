#!/usr/bin/env python3
# bench/db_migration_plot.py TSV SVG — draws bench/db_migration.sh's table (the newest row
# per instance count) as an SVG of two panels, seconds per migration command and the Nova
# databases' size on disk against the number of instances, and prints the table in
# Markdown with the growth per 1,000 instances (least-squares slope). Standard library only.
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#000000"]


def load(path):
    rows = {}
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                r = dict(zip(head, line.rstrip("\n").split("\t")))
                rows[int(r["instances"])] = r   # the newest row per N wins
    return [rows[n] for n in sorted(rows)]


def slope(xs, ys):
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    d = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / d if d else float("nan")


def panel(out, x0, y0, w, h, title, ylabel, xs, series):
    xmax = max(xs) or 1
    ymax = max(max(ys) for _, ys in series) or 1
    ymax *= 1.1
    def px(x): return x0 + w * x / xmax
    def py(y): return y0 + h - h * y / ymax
    out.append('<text x="%g" y="%g" font-size="14" font-weight="bold">%s</text>' % (x0, y0 - 10, title))
    out.append('<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>' % (x0, y0, w, h))
    for i in range(6):
        y = ymax * i / 5
        out.append('<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#eee"/>' % (x0, py(y), x0 + w, py(y)))
        out.append('<text x="%g" y="%g" font-size="11" text-anchor="end">%.3g</text>' % (x0 - 4, py(y) + 4, y))
    for x in xs:
        out.append('<text x="%g" y="%g" font-size="11" text-anchor="middle">%d</text>' % (px(x), y0 + h + 15, x))
    out.append('<text x="%g" y="%g" font-size="12" text-anchor="middle">instances in the cell DB</text>'
               % (x0 + w / 2, y0 + h + 32))
    out.append('<text x="%g" y="%g" font-size="12" transform="rotate(-90 %g %g)" text-anchor="middle">%s</text>'
               % (x0 - 45, y0 + h / 2, x0 - 45, y0 + h / 2, ylabel))
    for i, (name, ys) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        pts = " ".join("%g,%g" % (px(x), py(y)) for x, y in zip(xs, ys))
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>' % (pts, c))
        for x, y in zip(xs, ys):
            out.append('<circle cx="%g" cy="%g" r="3" fill="%s"/>' % (px(x), py(y), c))
        out.append('<text x="%g" y="%g" font-size="12" fill="%s">%s</text>' % (x0 + 10, y0 + 16 + 15 * i, c, name))


def main(tsv, svg):
    rows = load(tsv)
    if not rows:
        sys.exit("db_migration_plot.py: %s has no rows" % tsv)
    xs = [int(r["instances"]) for r in rows]
    col = lambda k: [float(r[k]) for r in rows]   # noqa: E731
    total = [a + b + c for a, b, c in zip(col("api_db_sync_s"), col("db_sync_s"), col("online_migrations_s"))]
    times = [("nova-manage api_db sync", col("api_db_sync_s")), ("nova-manage db sync", col("db_sync_s")),
             ("db online_data_migrations", col("online_migrations_s")), ("total", total)]
    mb = lambda k: [v / 1048576 for v in col(k)]   # noqa: E731
    sizes = [("before the migration", mb("db_bytes_before")), ("after", mb("db_bytes_after"))]
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="900" height="380" font-family="sans-serif">',
           '<rect width="900" height="380" fill="white"/>']
    panel(out, 70, 40, 340, 280, "Zed → 2025.1 migration time (s)", "seconds", xs, times)
    panel(out, 520, 40, 340, 280, "Nova databases on disk (MB)", "MB", xs, sizes)
    out.append("</svg>")
    with open(svg, "w") as f:
        f.write("\n".join(out) + "\n")
    print("| instances | api_db sync (s) | db sync (s) | online data migrations (s) | rows migrated online | "
          "total (s) | DB before (MB) | DB after (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r, t in zip(rows, total):
        print("| %s | %s | %s | %s | %s | %.2f | %.1f | %.1f |" % (
            r["instances"], r["api_db_sync_s"], r["db_sync_s"], r["online_migrations_s"], r["online_rows"], t,
            float(r["db_bytes_before"]) / 1048576, float(r["db_bytes_after"]) / 1048576))
    print()
    for name, ys in times:
        print("growth, %s: %.3f s per 1,000 instances" % (name, 1000 * slope(xs, ys)))
    for name, ys in sizes:
        print("growth, DB size %s: %.2f MB per 1,000 instances" % (name, 1000 * slope(xs, ys)))
    print("rows migrated online per instance: %.2f" % slope(xs, col("online_rows")))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: bench/db_migration_plot.py TSV SVG")
    main(sys.argv[1], sys.argv[2])
