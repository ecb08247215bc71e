// dynamos-mpi-is: integer bucket sort with an all-to-all key exchange (IS-like).
//
// As NAS IS does: keys drawn from a bell-shaped distribution (the mean of four uniforms)
// in [0, max_key); each iteration changes two keys, buckets every key by the rank that
// owns its key range, exchanges counts (MPI_Alltoall) and keys (MPI_Alltoallv), and
// counting-sorts the received keys.
//
// Verification, every iteration, independent of the sort: the output is ordered within
// each rank and across rank boundaries, every key lies in its rank's range, the number
// of keys is preserved, and the output is a permutation of the input (a sum of hashes of
// the keys, which does not depend on order, is equal on both sides).
#include <algorithm>
#include <cmath>
#include <vector>

#include "bench/mpi/common.hpp"
#include "bench/workload/field.hpp"
#include "bench/workload/size.hpp"

using namespace dynamos;
using namespace dynamos::mpiwork;
namespace po = boost::program_options;

namespace {

const char* kProgram = "dynamos-mpi-is";
using Key = std::uint32_t;

std::uint64_t multiset_hash(const Key* k, std::size_t n) {
  std::uint64_t h = 0;
  for (std::size_t i = 0; i < n; ++i)
    h += workload::mix64(k[i] * 0x100000001b3ull);
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  CommonOptions o;
  po::options_description own("IS options");
  auto rc = parse_options(argc, argv, kProgram,
                          "integer bucket sort with an all-to-all key exchange (IS-like); every "
                          "iteration's output is checked for order and permutation.",
                          own, 10, o);
  if (rc) return *rc;
  MPI_Init(&argc, &argv);
  Run run(o, "is", "keys");
  const int rank = run.rank(), ranks = run.ranks();

  // Per key: the keys, the send buffer, receive and output buffers with headroom for
  // imbalance, and the counters: about 18 bytes.
  const std::uint64_t nk = std::max<std::uint64_t>(1024, o.mem / 18);
  const std::uint64_t total = nk * static_cast<std::uint64_t>(ranks);
  std::uint64_t max_key = 1024;
  while (max_key < total / 16 && max_key < (1ull << 31))
    max_key <<= 1;
  // Key ranges are split between ranks by a global histogram each iteration, as NAS IS
  // does, so that every rank receives about as many keys as it sends.
  constexpr std::uint64_t kBuckets = 1024;
  const std::uint64_t bucket_width = max_key / kBuckets;
  std::vector<unsigned long long> hist(kBuckets);
  std::vector<int> owner(kBuckets);
  std::vector<std::uint64_t> first_bucket(ranks + 1);

  std::vector<Key> keys(nk), send(nk);
  for (std::uint64_t i = 0; i < nk; ++i) {
    std::uint64_t g = nk * rank + i, h = workload::mix64(g ^ workload::mix64(o.seed));
    double sum = 0;
    for (int j = 0; j < 4; ++j, h = workload::mix64(h))
      sum += static_cast<double>(h >> 11) * 0x1.0p-53;
    keys[i] = static_cast<Key>(
        std::min<double>(static_cast<double>(max_key) - 1, sum / 4 * static_cast<double>(max_key)));
  }
  std::vector<Key> recv(nk + nk / 4 + 1024), sorted(recv.size());
  std::vector<std::uint32_t> count;
  std::vector<int> scount(ranks), rcount(ranks), sdispl(ranks), rdispl(ranks);

  if (rank == 0 && !o.quiet)
    std::fprintf(stderr, "is: %llu keys in [0, %llu) on %d rank(s), %s per rank\n",
                 static_cast<unsigned long long>(total), static_cast<unsigned long long>(max_key),
                 ranks,
                 workload::format_size(
                     4 * (keys.size() + send.size() + recv.size() + sorted.size() + count.size()))
                     .c_str());

  run.start();
  const std::uint64_t chunk = 1 << 16;
  std::uint64_t it = 0, work = 0, failures = 0;
  double key_sum = 0;
  while (run.keep_going(it)) {
    ++it;
    // Change two keys per iteration, as NAS IS does, so that no two sorts are the same.
    if (rank == 0) keys[it % nk] = static_cast<Key>(it % max_key);
    if (rank == ranks - 1) keys[(it * 7919) % nk] = static_cast<Key>(max_key - 1 - it % max_key);

    // Split the key range by a global histogram, bucket by owner and exchange.
    std::fill(hist.begin(), hist.end(), 0);
    for (Key k : keys)
      ++hist[k / bucket_width];
    MPI_Allreduce(MPI_IN_PLACE, hist.data(), kBuckets, MPI_UNSIGNED_LONG_LONG, MPI_SUM,
                  MPI_COMM_WORLD);
    {
      unsigned long long seen = 0;
      int r = 0;
      first_bucket[0] = 0;
      for (std::uint64_t b = 0; b < kBuckets; ++b) {
        owner[b] = r;
        seen += hist[b];
        while (r < ranks - 1 && seen >= total * (r + 1) / ranks)
          first_bucket[++r] = b + 1;
      }
      while (r < ranks)
        first_bucket[++r] = kBuckets;
    }
    const std::uint64_t lo = first_bucket[rank] * bucket_width;
    const std::uint64_t hi = first_bucket[rank + 1] * bucket_width;
    if (count.size() < hi - lo + 1) count.resize(hi - lo + 1);
    std::fill(scount.begin(), scount.end(), 0);
    for (Key k : keys)
      ++scount[owner[k / bucket_width]];
    sdispl[0] = 0;
    for (int d = 1; d < ranks; ++d)
      sdispl[d] = sdispl[d - 1] + scount[d - 1];
    std::uint64_t counted = 0;  // progress: half a unit per key bucketed, half per key sorted
    {
      std::vector<int> pos = sdispl;
      for (std::uint64_t i0 = 0; i0 < nk; i0 += chunk) {
        std::uint64_t i1 = std::min(nk, i0 + chunk);
        for (std::uint64_t i = i0; i < i1; ++i)
          send[pos[owner[keys[i] / bucket_width]]++] = keys[i];
        run.progress().add((i1 - i0) / 2);
        counted += (i1 - i0) / 2;
      }
    }
    MPI_Alltoall(scount.data(), 1, MPI_INT, rcount.data(), 1, MPI_INT, MPI_COMM_WORLD);
    rdispl[0] = 0;
    for (int s = 1; s < ranks; ++s)
      rdispl[s] = rdispl[s - 1] + rcount[s - 1];
    std::uint64_t received = static_cast<std::uint64_t>(rdispl[ranks - 1]) + rcount[ranks - 1];
    if (received > recv.size()) {
      recv.resize(received + received / 8);
      sorted.resize(recv.size());
    }
    MPI_Alltoallv(send.data(), scount.data(), sdispl.data(), MPI_UINT32_T, recv.data(),
                  rcount.data(), rdispl.data(), MPI_UINT32_T, MPI_COMM_WORLD);

    // Counting sort of the local range.
    std::fill_n(count.begin(), hi - lo, 0u);
    for (std::uint64_t i0 = 0; i0 < received; i0 += chunk) {
      std::uint64_t i1 = std::min(received, i0 + chunk);
      for (std::uint64_t i = i0; i < i1; ++i)
        ++count[recv[i] - lo];
      std::uint64_t share = std::min(nk - counted, (i1 - i0) / 2);
      run.progress().add(share);
      counted += share;
    }
    std::uint64_t out = 0;
    for (std::uint64_t k = 0; k + lo < hi; ++k) {
      std::fill_n(sorted.begin() + static_cast<std::ptrdiff_t>(out), count[k],
                  static_cast<Key>(lo + k));
      out += count[k];
    }
    run.progress().add(nk - counted);
    work += nk;
    if (run.inject_now(it) && received > 2) sorted[received / 2] ^= 1u << 4;  // a corrupted key

    // Verify: order, ranges, count and permutation.
    std::uint64_t bad = out != received ? 1 : 0;
    for (std::uint64_t i = 0; i < received; ++i) {
      if (sorted[i] < lo || sorted[i] >= hi) ++bad;
      if (i && sorted[i] < sorted[i - 1]) ++bad;
    }
    unsigned long long mine[4] = {multiset_hash(keys.data(), nk),
                                  multiset_hash(sorted.data(), received), nk, received};
    unsigned long long sums[4];
    MPI_Allreduce(mine, sums, 4, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (sums[0] != sums[1] || sums[2] != sums[3]) ++bad;
    // Across ranks: each rank's smallest key is at least the previous rank's largest.
    long long edge[2] = {received ? static_cast<long long>(sorted[0]) : -1,
                         received ? static_cast<long long>(sorted[received - 1]) : -1};
    std::vector<long long> edges(2 * ranks);
    MPI_Allgather(edge, 2, MPI_LONG_LONG, edges.data(), 2, MPI_LONG_LONG, MPI_COMM_WORLD);
    long long prev_max = -1;
    for (int r = 0; r < ranks; ++r) {
      if (edges[2 * r] < 0) continue;
      if (edges[2 * r] < prev_max) ++bad;
      prev_max = edges[2 * r + 1];
    }
    unsigned long long bad_all = 0, bad_local = bad;
    MPI_Allreduce(&bad_local, &bad_all, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    failures += bad_all;

    double s = 0;
    for (std::uint64_t i = 0; i < received; ++i)
      s += sorted[i];
    MPI_Allreduce(&s, &key_sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    run.progress().iteration_done();
    run.report(it, work, failures ? "VERIFICATION FAILING" : "sorted and verified");
  }

  bool verified = it > 0 && failures == 0;
  workload::ResultLine extra;
  extra.add("keys", total).add("max_key", max_key).add("failures", failures);
  int code = run.finish(extra, it, work, verified, key_sum, static_cast<double>(failures));
  MPI_Finalize();
  return code;
}
