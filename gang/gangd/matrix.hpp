// The Ousterhout matrix: time slots (rows) by nodes (columns). Every job is placed in
// one row, on a set of nodes, with some ranks on each; a node holds at most its
// `slots` ranks per row. Each quantum the active row moves to the next non-empty row:
// its jobs run, everything else stops, except that jobs of other rows whose cells are
// free in the active row fill them ("alternative scheduling"). Hence a job that shares
// no node with any other job is never switched, and two jobs on the same nodes
// alternate every quantum.
//
// Memory. A node has a memory size (0 while unknown) and a job asks for memory per
// rank. A node's committed memory is the sum over every job placed on it, in every row
// (a frozen job's pages stay resident or in swap), and a placement keeps it within
// `overcommit` times the node's memory, the factor the job's request names (gangd
// allows more with a paging policy that pages out at switches than under demand
// paging). A node that is not open (drained or down) takes no new job.
//
// The matrix is pure bookkeeping: no I/O, no clocks. gangd turns each Step into a
// switch round. Rows are never renumbered (a placement's row is stable, so the journal
// can store it); an emptied row is skipped and reused.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace dynamos::gang {

using JobId = std::uint64_t;

struct Cell {
  std::size_t node = 0;  // index into the matrix's nodes
  int ranks = 0;
};

struct Placement {
  JobId job = 0;
  int row = 0;
  std::vector<Cell> cells;
  std::uint64_t mem_per_rank = 0;  // bytes, 0 = no request
  int ranks() const;
};

// What a job asks of the matrix.
struct Request {
  int ranks = 1;
  int nodes = 0;                   // exactly this many nodes, or 0: as few as fit
  std::uint64_t mem_per_rank = 0;  // bytes a rank commits on its node; 0: none asked
  double overcommit = 1.0;         // committed memory on a node <= overcommit * its memory
};

class Matrix {
 public:
  struct NodeSpec {
    std::string name;
    int slots = 1;
    std::uint64_t mem = 0;  // bytes; 0 = unknown (no job asking for memory fits)
    bool open = true;       // false: drained or down, no new jobs
  };

  explicit Matrix(std::vector<NodeSpec> nodes, int max_rows = 8);

  // Places a job of `ranks` ranks, spread evenly over exactly `nodes` nodes, or packed
  // onto as few nodes as fit when `nodes` is 0. First fit over the rows, then a new
  // row. Fails (invalid_argument) when the job can never fit, (busy) when every row is
  // taken. Does not change the running set: call recompute().
  Result<Placement> place(JobId job, int ranks, int nodes = 0);
  // The same with memory: a node takes a rank only when its committed memory stays
  // within req.overcommit times its memory. Fails (invalid_argument) when the job could
  // not fit even on an empty cluster of the open nodes' sizes, (busy) when not now.
  // A busy failure says only "no room": why_not() explains (it costs a few placements).
  Result<Placement> place(JobId job, const Request& req);
  // Why a job that could fit on an empty cluster does not fit now.
  std::string why_not(JobId job, const Request& req) const;
  // Places a job exactly at `p` (its row and cells) if every cell has room for `req`
  // (slots, memory, open nodes): the scheduler's what-if copies use it to keep a
  // placement made in the real matrix.
  Result<void> place_at(const Placement& p, const Request& req);
  // Puts back a placement read from the journal, checking it still fits.
  Result<void> restore(const Placement& p);
  Result<void> remove(JobId job);

  const Placement* find(JobId job) const;
  const std::vector<NodeSpec>& nodes() const { return nodes_; }
  std::size_t node_index(const std::string& name) const;  // npos when unknown
  void set_node_memory(std::size_t node, std::uint64_t bytes);
  // A node added at runtime (gangd's reconfigure): the last index, empty in every row.
  std::size_t add_node(NodeSpec spec);
  void set_node_open(std::size_t node, bool open);
  // Memory committed on a node by the jobs placed there (every row).
  std::uint64_t committed(std::size_t node) const { return committed_[node]; }
  std::size_t jobs() const { return placements_.size(); }
  std::vector<JobId> placed_jobs() const;  // in id order
  int rows() const { return static_cast<int>(rows_.size()); }
  int active_row() const { return active_; }
  const std::set<JobId>& running() const { return running_; }
  bool is_running(JobId job) const { return running_.contains(job); }

  // What changes at a quantum boundary.
  struct Step {
    int active_row = 0;
    std::vector<JobId> stopped;  // were running, now frozen
    std::vector<JobId> started;  // were frozen (or new), now run
    bool changed() const { return !stopped.empty() || !started.empty(); }
  };
  // Moves to the next non-empty row and returns the difference in running jobs.
  Step advance();
  // Re-derives the running set for the current row (after place or remove).
  Step recompute();

  // Jobs with a cell on `node`, in row order.
  std::vector<JobId> jobs_on(std::size_t node) const;
  // Nodes with no running job in the current quantum (cycle-stealing candidates).
  std::vector<std::size_t> idle_nodes() const;
  // A text table, one line a row, "*" marking the active row.
  std::string render() const;

 private:
  struct Row {
    std::vector<JobId> jobs;
    std::vector<int> used;  // ranks per node
    int free = 0;           // slots left over all nodes
  };
  Row new_row() const;
  bool fits(const Row& row, const std::vector<Cell>& cells) const;
  // Ranks of `req` node n can take in `row` now (slots and memory).
  int room(const Row& row, std::size_t n, const Request& req) const;
  Result<std::vector<Cell>> cells_for(const Row& row, const Request& req) const;
  Result<void> check_request(JobId job, const Request& req) const;

  void add(Row& row, const Placement& p, int sign);
  std::set<JobId> running_for(int active) const;
  Step diff_to(std::set<JobId> next);

  std::vector<NodeSpec> nodes_;
  int max_rows_;
  std::vector<Row> rows_;
  std::map<JobId, Placement> placements_;
  std::vector<std::uint64_t> committed_;  // bytes per node
  int active_ = 0;
  std::set<JobId> running_;
};

}  // namespace dynamos::gang
