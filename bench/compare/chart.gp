# The chart of bench/compare.sh: gnuplot -e "data='chart.dat'; out='x.png'" chart.gp
# Block 0 of the data: events/s per configuration (rows) and system (columns,
# 0.001, below the y range, where a system did not run); block 1: feed latency p50/p99 per system.
set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"
set output out
set multiplot layout 2,1 title "evlog side by side (bench/compare.sh)" font ",13"

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set yrange [10:*]
set format y "10^{%L}"
set ylabel "events/s (log scale), higher is better"
set xtics rotate by -30 nomirror
set grid ytics
set key outside right top
set size 1, 0.66
set origin 0, 0.34
plot for [c=2:8] data index 0 using c:xtic(1) title columnheader(c)

unset logscale y
set yrange [0:*]
set format y "%g"
set size 1, 0.32
set origin 0, 0
set ylabel "feed latency ms, lower is better"
set xtics norotate
set title "6: append to delivery, 100 subscribers"
plot data index 1 using 2:xtic(1) title "p50", '' index 1 using 3 title "p99"
unset multiplot
