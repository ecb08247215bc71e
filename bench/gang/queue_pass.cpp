// gangd's scheduling pass at scale (issue 21): 1,000 simulated nodes (16 slots, 64 GiB
// each, 8 time slots), running jobs (16 ranks of 512 MiB a node) with time limits, 10,000 pending
// jobs of random sizes, memory requests and limits. One iteration is one schedule_pass() over the
// whole queue: placement by slots and memory, the head's reservation, backfill.
//
//   build/bin/bench_gang_queue_pass
//
// Cases: Full (every time slot taken: nothing fits, every pending job is tried and the
// head's reservation computed), Room (a tenth of the nodes free: some jobs start, the
// rest wait), and the same with Slurm's default backfill depth (bf_max_job_test=500)
// as the baseline a site would run. The matrix is restored between iterations, outside
// the timing. Counters: started, backfilled, pending (jobs left waiting).
#include <benchmark/benchmark.h>

#include <random>

#include "gang/gangd/queue.hpp"

using namespace dynamos::gang;

namespace {

constexpr std::uint64_t GiB = 1ull << 30;
constexpr int kNodes = 1000, kSlots = 16, kRows = 8, kPending = 10'000;

struct Scene {
  Matrix matrix;
  std::map<JobId, std::int64_t> ends;
  std::vector<PendingJob> queue;
};

// Running jobs of 16 ranks (one node each) fill `full_nodes` nodes in every time slot.
Scene make_scene(int full_nodes) {
  std::vector<Matrix::NodeSpec> specs;
  for (int i = 0; i < kNodes; ++i)
    specs.push_back({"sim" + std::to_string(i), kSlots, 64 * GiB, true});
  Scene s{Matrix(specs, kRows), {}, {}};
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> minutes(1, 600);
  JobId id = 1'000'000;
  for (int row = 0; row < kRows; ++row)
    for (int n = 0; n < full_nodes; ++n) {
      if (!s.matrix.place(id, Request{kSlots, 1, GiB / 2, 1.5})) std::abort();
      if (id % 3 != 0) s.ends[id] = minutes(rng) * 60;  // a third run without a limit
      ++id;
    }
  std::uniform_int_distribution<int> ranks(1, 256), mem(0, 8), lim(0, 24);
  for (JobId j = 1; j <= kPending; ++j)
    s.queue.push_back(
        PendingJob{j, Request{ranks(rng), 0, mem(rng) * GiB / 2, 1.5}, lim(rng) * 900, false});
  return s;
}

void run(benchmark::State& state, int full_nodes, std::size_t depth) {
  Scene scene = make_scene(full_nodes);
  PassResult last;
  for (auto _ : state) {
    state.PauseTiming();
    Matrix m = scene.matrix;
    state.ResumeTiming();
    last = schedule_pass(m, scene.queue, scene.ends, 0, QueueOptions{depth});
    benchmark::DoNotOptimize(last);
  }
  state.counters["started"] = static_cast<double>(last.started.size());
  state.counters["backfilled"] = static_cast<double>(last.backfilled);
  state.counters["pending"] = static_cast<double>(last.reasons.size());
}

void BM_PassFull(benchmark::State& s) {
  run(s, kNodes, 100'000);
}
void BM_PassFullDepth500(benchmark::State& s) {
  run(s, kNodes, 500);
}
void BM_PassRoom(benchmark::State& s) {
  run(s, kNodes * 9 / 10, 100'000);
}
void BM_PassRoomDepth500(benchmark::State& s) {
  run(s, kNodes * 9 / 10, 500);
}

// One placement decision on the 1,000-node matrix with room in the last time slot.
void BM_PlaceOne(benchmark::State& state) {
  Scene scene = make_scene(kNodes * 9 / 10);
  Matrix m = scene.matrix;
  for (auto _ : state) {
    auto p = m.place(1, Request{64, 0, 2 * GiB, 1.5});
    benchmark::DoNotOptimize(p);
    (void)m.remove(1);
  }
}

}  // namespace

BENCHMARK(BM_PassFull)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_PassFullDepth500)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_PassRoom)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_PassRoomDepth500)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_PlaceOne)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
