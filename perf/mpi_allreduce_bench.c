/* perf/mpi_allreduce_bench.c — the Open MPI side of perf/bench_coll.sh: MPI_Allreduce of
 * float32 sums, timed like nccl-tests (per size: WARMUP untimed calls, a barrier, then
 * ITERS back-to-back calls, each between two MPI_Wtime()s; the per-call mean, averaged over
 * the ranks, and the median call (Gloo's statistic), averaged the same way).
 * algbw = bytes / time, busbw = algbw * 2(n-1)/n, both in GB/s (1e9 B/s).
 * Out-of-place. After the timed calls one more call is checked: rank r contributes
 * r + 1 + (i % 7) at element i, so every element of the sum is known exactly.
 *
 *   mpicc -O2 -o mpi_allreduce_bench perf/mpi_allreduce_bench.c
 *   mpirun -n 4 --mca pml ob1 --mca btl tcp,self ./mpi_allreduce_bench 4096 67108864 20 5
 *
 * Rank 0 prints one line per size as it completes:
 *   bytes count time_us algbw busbw wrong time_p50_us busbw_p50
 * Exit 1 on a wrong element or bad arguments. Not part of the braid build.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static long parse_count(const char* s) {
  char* end = NULL;
  long v = strtol(s, &end, 10);
  return (end && *end == '\0' && v > 0) ? v : -1;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, nranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  if (argc != 5) {
    if (rank == 0) fprintf(stderr, "usage: %s MINBYTES MAXBYTES ITERS WARMUP\n", argv[0]);
    MPI_Finalize();
    return 1;
  }
  long minb = parse_count(argv[1]), maxb = parse_count(argv[2]);
  long iters = parse_count(argv[3]), warmup = parse_count(argv[4]);
  if (minb < 4 || maxb < minb || iters < 1 || warmup < 1) {
    if (rank == 0) fprintf(stderr, "%s: bad arguments\n", argv[0]);
    MPI_Finalize();
    return 1;
  }
  size_t maxcount = (size_t)maxb / sizeof(float);
  float* sendbuf = malloc(maxcount * sizeof(float));
  float* recvbuf = malloc(maxcount * sizeof(float));
  double* times = malloc((size_t)(iters + 1) * sizeof(double));
  double* each = malloc((size_t)iters * sizeof(double));
  if (!sendbuf || !recvbuf || !times || !each) {
    fprintf(stderr, "%s: out of memory\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (size_t i = 0; i < maxcount; ++i) {
    sendbuf[i] = (float)(rank + 1 + (int)(i % 7));
    recvbuf[i] = 0.0f;
  }
  if (rank == 0) {
    printf("# Open MPI allreduce, float32 sum, %d ranks, %ld iters, %ld warmup\n", nranks,
           iters, warmup);
    printf("# bytes count time_us algbw_GBps busbw_GBps wrong time_p50_us busbw_p50_GBps\n");
    fflush(stdout);
  }
  long total_wrong = 0;
  for (long bytes = minb; bytes <= maxb; bytes *= 2) {
    int count = (int)(bytes / (long)sizeof(float));
    for (long w = 0; w < warmup; ++w)
      MPI_Allreduce(sendbuf, recvbuf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    times[0] = t0;
    for (long it = 0; it < iters; ++it) {
      MPI_Allreduce(sendbuf, recvbuf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      times[it + 1] = MPI_Wtime();
    }
    double sec = (times[iters] - t0) / (double)iters;
    double sum_sec = 0.0;
    MPI_Reduce(&sec, &sum_sec, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    /* The median call (Gloo's statistic), averaged over ranks like the mean. */
    for (long it = 0; it < iters; ++it) each[it] = times[it + 1] - times[it];
    qsort(each, (size_t)iters, sizeof(double), cmp_double);
    double p50 = each[iters / 2], sum_p50 = 0.0;
    MPI_Reduce(&p50, &sum_p50, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);

    for (int i = 0; i < count; ++i) recvbuf[i] = -1.0f;
    MPI_Allreduce(sendbuf, recvbuf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    long wrong = 0;
    for (int i = 0; i < count; ++i) {
      float expect = (float)(nranks * (nranks + 1) / 2 + nranks * (i % 7));
      if (recvbuf[i] != expect) ++wrong;
    }
    long all_wrong = 0;
    MPI_Reduce(&wrong, &all_wrong, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      double t = sum_sec / nranks;
      double algbw = (double)bytes / t / 1e9;
      double busbw = algbw * 2.0 * (nranks - 1) / nranks;
      double tp = sum_p50 / nranks;
      double busbw_p50 = (double)bytes / tp / 1e9 * 2.0 * (nranks - 1) / nranks;
      printf("%ld %d %.3f %.4f %.4f %ld %.3f %.4f\n", bytes, count, t * 1e6, algbw, busbw,
             all_wrong, tp * 1e6, busbw_p50);
      fflush(stdout);
      total_wrong += all_wrong;
    }
  }
  free(sendbuf);
  free(recvbuf);
  free(times);
  free(each);
  MPI_Finalize();
  return total_wrong == 0 ? 0 : 1;
}
