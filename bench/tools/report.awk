# report.awk: turn bench/run's raw TSV (one line per run) into the summary TSV and the
# Markdown report. POSIX awk (mawk works).
#
#   awk -f report.awk -v info=INFO.tsv -v meta=META.tsv -v summary=OUT-summary.tsv \
#       -v raw_name=NAME.tsv RAW.tsv > OUT.md
#
# info: key<TAB>value lines (machine, versions, settings).
# meta: measure<TAB>kind(rate|stream|idle)<TAB>title<TAB>value unit, in report order.
# Every figure is the median over the runs of one (measure, target); the ratio is the
# median of the target over the median of "direct" in the same measurement.

BEGIN { FS = "\t" }

NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }

{
    m = $col["measure"]; t = $col["target"]; k = m SUBSEP t
    if (!(k in seen)) {
        seen[k] = 1
        ntg[m]++; tg[m, ntg[m]] = t
    }
    if ($col["note"] != "-" && $col["note"] != "") note[k] = $col["note"]
    errs[k] += ($col["errors"] == "-" ? 0 : $col["errors"])
    if ($col["run"] == "-") next
    runs[k]++
    add(k, "value"); add(k, "p50_ms"); add(k, "p99_ms"); add(k, "cpu_per_unit")
    add(k, "pss_per_tunnel_kib"); add(k, "rss_before_kib"); add(k, "rss_with_kib")
    add(k, "tunnels"); add(k, "proxy_cpu_s"); add(k, "origin_cpu_s")
    unit[m] = $col["unit"]; cunit[m] = $col["cpu_unit"]
}

function add(k, f,    v) {
    v = $col[f]
    if (v == "-" || v == "") return
    n[k, f]++
    val[k, f, n[k, f]] = v + 0
}

# median, min, max of the samples of (k, f); "" when there are none
function stat(k, f, which,    i, j, c, x, a) {
    c = n[k, f] + 0
    if (c == 0) return ""
    for (i = 1; i <= c; i++) a[i] = val[k, f, i]
    for (i = 2; i <= c; i++) {            # insertion sort: a handful of runs
        x = a[i]
        for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]
        a[j + 1] = x
    }
    if (which == "min") return a[1]
    if (which == "max") return a[c]
    if (c % 2) return a[(c + 1) / 2]
    return (a[c / 2] + a[c / 2 + 1]) / 2
}

function fmt(x) {
    if (x == "") return "—"
    x += 0
    if (x >= 100 || x <= -100) return sprintf("%.0f", x)
    if (x >= 10 || x <= -10) return sprintf("%.1f", x)
    if (x >= 1 || x <= -1) return sprintf("%.2f", x)
    return sprintf("%.3f", x)
}

function name(t, m) {
    if (t == "direct") return "direct (no proxy)"
    if (t == "proxyd") return (m ~ /_tcp$/ ? "proxyd tcp_stream" : "proxyd") " (2 workers)"
    if (t == "proxyd-1w") return (m ~ /_tcp$/ ? "proxyd tcp_stream" : "proxyd") " (1 worker)"
    if (t == "haproxy") return "haproxy (mode tcp)"
    if (t == "dante") return "dante (danted)"
    return t
}

END {
    # info block
    while ((getline line < info) > 0) {
        split(line, a, "\t"); ninfo++; ikey[ninfo] = a[1]; ival[ninfo] = a[2]
        if (a[1] == "date") date = a[2]
        if (a[1] == "settings") settings = a[2]
    }
    printf "# proxyd benchmark, %s\n\n", date
    print "| | |"
    print "|---|---|"
    for (i = 1; i <= ninfo; i++) if (ikey[i] != "date") printf "| %s | %s |\n", ikey[i], ival[i]
    print ""
    print "Each figure is the median of the runs (see `settings`); \"× direct\" divides it by the"
    print "direct connection's median in the same table. Client, origin (nginx, 1 worker) and"
    print "proxy share the same cores, so read the proxy's CPU time per unit of work beside"
    print "every rate: it is the proxy's own cost (utime+stime of all its processes and"
    print "threads over exactly the run). See bench/README.md. Raw runs: `" raw_name "`."

    print "measure\ttarget\truns\tvalue\tmin\tmax\tunit\tratio_to_direct\tp50_ms\tp99_ms\tcpu_per_unit\tcpu_unit\terrors\trss_before_kib\trss_with_kib\tpss_per_tunnel_kib\ttunnels\tnote" > summary

    while ((getline line < meta) > 0) {
        split(line, a, "\t"); m = a[1]; kind = a[2]; title = a[3]; vunit = a[4]
        if (!(m in ntg)) continue
        base = stat(m SUBSEP "direct", "value", "med")
        printf "\n## %s\n\n", title
        if (kind == "rate") {
            printf "| target | %s | × direct | p50 ms | p99 ms | proxy CPU %s | runs min–max | errors |\n", \
                vunit, (cunit[m] == "us/req" ? "µs/req" : "µs/conn")
            print "|---|---:|---:|---:|---:|---:|---:|---:|"
        } else if (kind == "stream") {
            print "| target | Gbit/s | × direct | proxy CPU s/GiB | runs min–max | errors |"
            print "|---|---:|---:|---:|---:|---:|"
        } else {
            print "| target | tunnels held | RSS before MiB | RSS with tunnels MiB | KiB/tunnel (RSS) | KiB/tunnel (PSS) | setup p99 ms | errors |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|"
        }
        for (i = 1; i <= ntg[m]; i++) {
            t = tg[m, i]; k = m SUBSEP t
            v = stat(k, "value", "med")
            ratio = (v != "" && base != "" && base > 0) ? v / base : ""
            e = errs[k] + 0
            et = e ""
            if (k in note) et = e " (" note[k] ")"
            mm = (runs[k] + 0 > 0) ? fmt(stat(k, "value", "min")) "–" fmt(stat(k, "value", "max")) : "—"
            if (kind == "rate") {
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name(t, m), fmt(v), \
                    (ratio == "" ? "—" : sprintf("%.2f", ratio)), fmt(stat(k, "p50_ms", "med")), \
                    fmt(stat(k, "p99_ms", "med")), fmt(stat(k, "cpu_per_unit", "med")), mm, et
            } else if (kind == "stream") {
                printf "| %s | %s | %s | %s | %s | %s |\n", name(t, m), fmt(v), \
                    (ratio == "" ? "—" : sprintf("%.2f", ratio)), \
                    fmt(stat(k, "cpu_per_unit", "med")), mm, et
            } else {
                r0 = stat(k, "rss_before_kib", "med"); r1 = stat(k, "rss_with_kib", "med")
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name(t, m), \
                    fmt(stat(k, "tunnels", "med")), (r0 == "" ? "—" : fmt(r0 / 1024)), \
                    (r1 == "" ? "—" : fmt(r1 / 1024)), fmt(v), \
                    fmt(stat(k, "pss_per_tunnel_kib", "med")), fmt(stat(k, "p99_ms", "med")), et
            }
            printf "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", \
                m, t, runs[k], v, stat(k, "value", "min"), stat(k, "value", "max"), unit[m], \
                ratio, stat(k, "p50_ms", "med"), stat(k, "p99_ms", "med"), \
                stat(k, "cpu_per_unit", "med"), cunit[m], e, stat(k, "rss_before_kib", "med"), \
                stat(k, "rss_with_kib", "med"), stat(k, "pss_per_tunnel_kib", "med"), \
                stat(k, "tunnels", "med"), (k in note ? note[k] : "") > summary
        }
    }
    if (settings ~ /--quick/) {
        print "\n_This was a `--quick` smoke run: one short run per case on a shared machine._"
        print "_It shows that every path works; it is not a measurement._"
    }
}
