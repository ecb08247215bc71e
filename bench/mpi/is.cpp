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

// The sort's state on one rank: its keys, the key ranges of all ranks and the buffers.
class BucketSort {
 public:
  BucketSort(const CommonOptions& o, Run& run) : o_(o), run_(run) {
    rank_ = run.rank();
    ranks_ = run.ranks();
    // Per key: the keys, the send buffer, receive and output buffers with headroom for
    // imbalance, and the counters: about 18 bytes.
    nk_ = std::max<std::uint64_t>(1024, o.mem / 18);
    total_ = nk_ * static_cast<std::uint64_t>(ranks_);
    while (max_key_ < total_ / 16 && max_key_ < (1ull << 31))
      max_key_ <<= 1;
    bucket_width_ = max_key_ / kBuckets;
    hist_.resize(kBuckets);
    owner_.resize(kBuckets);
    first_bucket_.resize(ranks_ + 1);
    keys_.resize(nk_);
    send_.resize(nk_);
    for (std::uint64_t i = 0; i < nk_; ++i) {
      std::uint64_t g = nk_ * rank_ + i, h = workload::mix64(g ^ workload::mix64(o.seed));
      double sum = 0;
      for (int j = 0; j < 4; ++j, h = workload::mix64(h))
        sum += static_cast<double>(h >> 11) * 0x1.0p-53;
      keys_[i] = static_cast<Key>(std::min<double>(static_cast<double>(max_key_) - 1,
                                                   sum / 4 * static_cast<double>(max_key_)));
    }
    recv_.resize(nk_ + nk_ / 4 + 1024);
    sorted_.resize(recv_.size());
    scount_.resize(ranks_);
    rcount_.resize(ranks_);
    sdispl_.resize(ranks_);
    rdispl_.resize(ranks_);
  }

  void describe() const {
    std::fprintf(stderr, "is: %llu keys in [0, %llu) on %d rank(s), %s per rank\n",
                 static_cast<unsigned long long>(total_), static_cast<unsigned long long>(max_key_),
                 ranks_,
                 workload::format_size(4 * (keys_.size() + send_.size() + recv_.size() +
                                            sorted_.size() + count_.size()))
                     .c_str());
  }

  // One iteration: change two keys, split the key range, exchange, sort; the number of
  // failed checks over all ranks.
  std::uint64_t iteration(std::uint64_t it) {
    // Change two keys per iteration, as NAS IS does, so that no two sorts are the same.
    if (rank_ == 0) keys_[it % nk_] = static_cast<Key>(it % max_key_);
    if (rank_ == ranks_ - 1)
      keys_[(it * 7919) % nk_] = static_cast<Key>(max_key_ - 1 - it % max_key_);
    split_key_range();
    counted_ = 0;
    std::uint64_t received = exchange();
    std::uint64_t out = sort_local(received);
    if (run_.inject_now(it) && received > 2) sorted_[received / 2] ^= 1u << 4;  // a corrupted key
    std::uint64_t failures = verify(out, received);
    double s = 0;
    for (std::uint64_t i = 0; i < received; ++i)
      s += sorted_[i];
    MPI_Allreduce(&s, &key_sum_, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return failures;
  }

  std::uint64_t keys_per_rank() const { return nk_; }
  std::uint64_t total() const { return total_; }
  std::uint64_t max_key() const { return max_key_; }
  double key_sum() const { return key_sum_; }

 private:
  // Key ranges are split between ranks by a global histogram each iteration, as NAS IS
  // does, so that every rank receives about as many keys as it sends.
  static constexpr std::uint64_t kBuckets = 1024;
  static constexpr std::uint64_t kChunk = 1 << 16;

  void split_key_range() {
    std::fill(hist_.begin(), hist_.end(), 0);
    for (Key k : keys_)
      ++hist_[k / bucket_width_];
    MPI_Allreduce(MPI_IN_PLACE, hist_.data(), kBuckets, MPI_UNSIGNED_LONG_LONG, MPI_SUM,
                  MPI_COMM_WORLD);
    unsigned long long seen = 0;
    int r = 0;
    first_bucket_[0] = 0;
    for (std::uint64_t b = 0; b < kBuckets; ++b) {
      owner_[b] = r;
      seen += hist_[b];
      while (r < ranks_ - 1 && seen >= total_ * (r + 1) / ranks_)
        first_bucket_[++r] = b + 1;
    }
    while (r < ranks_)
      first_bucket_[++r] = kBuckets;
    lo_ = first_bucket_[rank_] * bucket_width_;
    hi_ = first_bucket_[rank_ + 1] * bucket_width_;
    if (count_.size() < hi_ - lo_ + 1) count_.resize(hi_ - lo_ + 1);
  }

  // Buckets the keys by owner and exchanges them; the number of keys received.
  std::uint64_t exchange() {
    std::fill(scount_.begin(), scount_.end(), 0);
    for (Key k : keys_)
      ++scount_[owner_[k / bucket_width_]];
    sdispl_[0] = 0;
    for (int d = 1; d < ranks_; ++d)
      sdispl_[d] = sdispl_[d - 1] + scount_[d - 1];
    // Progress: half a unit per key bucketed, half per key sorted.
    std::vector<int> pos = sdispl_;
    for (std::uint64_t i0 = 0; i0 < nk_; i0 += kChunk) {
      std::uint64_t i1 = std::min(nk_, i0 + kChunk);
      for (std::uint64_t i = i0; i < i1; ++i)
        send_[pos[owner_[keys_[i] / bucket_width_]]++] = keys_[i];
      run_.progress().add((i1 - i0) / 2);
      counted_ += (i1 - i0) / 2;
    }
    MPI_Alltoall(scount_.data(), 1, MPI_INT, rcount_.data(), 1, MPI_INT, MPI_COMM_WORLD);
    rdispl_[0] = 0;
    for (int s = 1; s < ranks_; ++s)
      rdispl_[s] = rdispl_[s - 1] + rcount_[s - 1];
    std::uint64_t received = static_cast<std::uint64_t>(rdispl_[ranks_ - 1]) + rcount_[ranks_ - 1];
    if (received > recv_.size()) {
      recv_.resize(received + received / 8);
      sorted_.resize(recv_.size());
    }
    MPI_Alltoallv(send_.data(), scount_.data(), sdispl_.data(), MPI_UINT32_T, recv_.data(),
                  rcount_.data(), rdispl_.data(), MPI_UINT32_T, MPI_COMM_WORLD);
    return received;
  }

  // Counting sort of the local range; the number of keys written.
  std::uint64_t sort_local(std::uint64_t received) {
    std::fill_n(count_.begin(), hi_ - lo_, 0u);
    for (std::uint64_t i0 = 0; i0 < received; i0 += kChunk) {
      std::uint64_t i1 = std::min(received, i0 + kChunk);
      for (std::uint64_t i = i0; i < i1; ++i)
        ++count_[recv_[i] - lo_];
      std::uint64_t share = std::min(nk_ - counted_, (i1 - i0) / 2);
      run_.progress().add(share);
      counted_ += share;
    }
    std::uint64_t out = 0;
    for (std::uint64_t k = 0; k + lo_ < hi_; ++k) {
      std::fill_n(sorted_.begin() + static_cast<std::ptrdiff_t>(out), count_[k],
                  static_cast<Key>(lo_ + k));
      out += count_[k];
    }
    run_.progress().add(nk_ - counted_);
    return out;
  }

  // Order, ranges, count and permutation, over all ranks.
  std::uint64_t verify(std::uint64_t out, std::uint64_t received) {
    std::uint64_t bad = out != received ? 1 : 0;
    for (std::uint64_t i = 0; i < received; ++i) {
      if (sorted_[i] < lo_ || sorted_[i] >= hi_) ++bad;
      if (i && sorted_[i] < sorted_[i - 1]) ++bad;
    }
    unsigned long long mine[4] = {multiset_hash(keys_.data(), nk_),
                                  multiset_hash(sorted_.data(), received), nk_, received};
    unsigned long long sums[4];
    MPI_Allreduce(mine, sums, 4, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (sums[0] != sums[1] || sums[2] != sums[3]) ++bad;
    // Across ranks: each rank's smallest key is at least the previous rank's largest.
    long long edge[2] = {received ? static_cast<long long>(sorted_[0]) : -1,
                         received ? static_cast<long long>(sorted_[received - 1]) : -1};
    std::vector<long long> edges(2 * ranks_);
    MPI_Allgather(edge, 2, MPI_LONG_LONG, edges.data(), 2, MPI_LONG_LONG, MPI_COMM_WORLD);
    long long prev_max = -1;
    for (int r = 0; r < ranks_; ++r) {
      if (edges[2 * r] < 0) continue;
      if (edges[2 * r] < prev_max) ++bad;
      prev_max = edges[2 * r + 1];
    }
    unsigned long long bad_all = 0, bad_local = bad;
    MPI_Allreduce(&bad_local, &bad_all, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return bad_all;
  }

  const CommonOptions& o_;
  Run& run_;
  int rank_ = 0, ranks_ = 1;
  std::uint64_t nk_ = 0, total_ = 0, max_key_ = 1024, bucket_width_ = 1;
  std::uint64_t lo_ = 0, hi_ = 0;  // this rank's key range this iteration
  std::uint64_t counted_ = 0;      // progress counted this iteration
  double key_sum_ = 0;
  std::vector<unsigned long long> hist_;
  std::vector<int> owner_;
  std::vector<std::uint64_t> first_bucket_;
  std::vector<Key> keys_, send_, recv_, sorted_;
  std::vector<std::uint32_t> count_;
  std::vector<int> scount_, rcount_, sdispl_, rdispl_;
};

}  // namespace

int main(int argc, char** argv) {
  CommonOptions o;
  po::options_description own("IS options");
  if (auto status = start(argc, argv, kProgram,
                          "integer bucket sort with an all-to-all key exchange (IS-like); every "
                          "iteration's output is checked for order and permutation.",
                          own, 10, o))
    return *status;
  Run run(o, "is", "keys");
  BucketSort sort(o, run);
  if (run.rank() == 0 && !o.quiet) sort.describe();

  run.start();
  std::uint64_t it = 0, work = 0, failures = 0;
  while (run.keep_going(it)) {
    ++it;
    failures += sort.iteration(it);
    work += sort.keys_per_rank();
    run.progress().iteration_done();
    run.report(it, work, failures ? "VERIFICATION FAILING" : "sorted and verified");
  }

  bool verified = it > 0 && failures == 0;
  workload::ResultLine extra;
  extra.add("keys", sort.total()).add("max_key", sort.max_key()).add("failures", failures);
  int code = run.finish(extra, it, work, verified, sort.key_sum(), static_cast<double>(failures));
  MPI_Finalize();
  return code;
}
