// An MPI rank for the remote tests: every rank prints its compute() result after
// each allreduce, so a test sees each rank of a running job take the patch.
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int compute(int x) {
  int acc = x * 3 + 1;
  acc ^= acc >> 2;
  __asm__ volatile("" : "+r"(acc));
  return x * 2 + (acc & 0);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int (*volatile fn)(int) = compute;
  for (long step = 0;; ++step) {
    int local = fn(7), sum = 0;
    MPI_Allreduce(&local, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (step % 10 == 0) {
      printf("rank %d pid %d result %d sum %d\n", rank, (int)getpid(), local, sum);
      fflush(stdout);
    }
    usleep(5000);
  }
  MPI_Finalize();
}
