/* Latency figures for the bench programs: sort the samples (microseconds)
 * and print them as "PREFIX_min_us=..." lines (count, min, median, p90,
 * p99, max, mean), the form the bench scripts read. */
#ifndef TK_BENCH_STATS_H
#define TK_BENCH_STATS_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static int
bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The p-quantile of n sorted samples (nearest rank). */
static double
bench_pct(const double *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return v[i < n ? i : n - 1];
}

/* Sorts v (n >= 1 samples) and prints its figures; returns their sum. */
static double
bench_stats(const char *prefix, double *v, size_t n)
{
	double sum = 0;

	qsort(v, n, sizeof(*v), bench_cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	printf("%s_count=%zu\n%s_min_us=%.0f\n%s_median_us=%.0f\n%s_p90_us=%.0f\n"
	       "%s_p99_us=%.0f\n%s_max_us=%.0f\n%s_mean_us=%.0f\n",
	       prefix, n, prefix, v[0], prefix, bench_pct(v, n, 0.5), prefix, bench_pct(v, n, 0.9),
	       prefix, bench_pct(v, n, 0.99), prefix, v[n - 1], prefix, sum / (double)n);
	return sum;
}

#endif
