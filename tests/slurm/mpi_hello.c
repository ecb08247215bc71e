// tests/slurm: an MPI program for the Slurm test bed. Every rank sends its host name and
// its IPv4 addresses (other than loopback) to rank 0 over MPI, which prints one line a
// rank: "rank R of N on HOST ADDR..." and a closing line "hello: N ranks on M hosts".
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { kLine = 512 };

static void describe(char* line, int rank, int size) {
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  int n = snprintf(line, kLine, "rank %d of %d on %s", rank, size, host);
  struct ifaddrs* ifs = NULL;
  if (getifaddrs(&ifs) != 0) return;
  for (struct ifaddrs* i = ifs; i != NULL && n < kLine - 20; i = i->ifa_next) {
    if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET) continue;
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in*)i->ifa_addr)->sin_addr, addr, sizeof addr);
    if (strncmp(addr, "127.", 4) == 0) continue;
    n += snprintf(line + n, kLine - n, " %s", addr);
  }
  freeifaddrs(ifs);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char line[kLine];
  describe(line, rank, size);
  if (rank == 0) {
    char hosts[64][256];
    int distinct = 0;
    for (int r = 0; r < size; r++) {
      char got[kLine];
      if (r == 0) {
        memcpy(got, line, kLine);
      } else {
        MPI_Recv(got, kLine, MPI_CHAR, r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      }
      printf("%s\n", got);
      char host[256] = "";
      sscanf(got, "rank %*d of %*d on %255s", host);
      int seen = 0;
      for (int h = 0; h < distinct; h++)
        seen |= strcmp(hosts[h], host) == 0;
      if (!seen && distinct < 64) strcpy(hosts[distinct++], host);
    }
    printf("hello: %d ranks on %d hosts\n", size, distinct);
    fflush(stdout);
  } else {
    MPI_Send(line, kLine, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
  }
  MPI_Finalize();
  return 0;
}
