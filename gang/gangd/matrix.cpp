#include "gang/gangd/matrix.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "base/units.hpp"

namespace dynamos::gang {

namespace {
std::string factor_text(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", f);
  return buf;
}
}  // namespace

int Placement::ranks() const {
  int n = 0;
  for (const auto& c : cells)
    n += c.ranks;
  return n;
}

Matrix::Matrix(std::vector<NodeSpec> nodes, int max_rows)
    : nodes_(std::move(nodes)), max_rows_(max_rows), committed_(nodes_.size(), 0) {}

std::size_t Matrix::node_index(const std::string& name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name) return i;
  return static_cast<std::size_t>(-1);
}

void Matrix::set_node_memory(std::size_t node, std::uint64_t bytes) {
  if (node < nodes_.size()) nodes_[node].mem = bytes;
}

std::size_t Matrix::add_node(NodeSpec spec) {
  for (auto& row : rows_) {
    row.used.push_back(0);
    row.free += spec.slots;
  }
  nodes_.push_back(std::move(spec));
  committed_.push_back(0);
  return nodes_.size() - 1;
}

void Matrix::set_node_open(std::size_t node, bool open) {
  if (node < nodes_.size()) nodes_[node].open = open;
}

Matrix::Row Matrix::new_row() const {
  Row row{{}, std::vector<int>(nodes_.size(), 0), 0};
  for (const auto& n : nodes_)
    row.free += n.slots;
  return row;
}

bool Matrix::fits(const Row& row, const std::vector<Cell>& cells) const {
  for (const auto& c : cells) {
    if (c.node >= nodes_.size() || c.ranks <= 0) return false;
    if (row.used[c.node] + c.ranks > nodes_[c.node].slots) return false;
  }
  return true;
}

int Matrix::room(const Row& row, std::size_t n, const Request& req) const {
  const NodeSpec& node = nodes_[n];
  if (!node.open) return 0;
  int free = node.slots - row.used[n];
  if (free <= 0 || req.mem_per_rank == 0) return std::max(free, 0);
  if (node.mem == 0) return 0;  // unknown size: nothing that asks for memory
  auto limit = static_cast<std::uint64_t>(req.overcommit * static_cast<double>(node.mem));
  if (committed_[n] >= limit) return 0;
  auto by_mem = (limit - committed_[n]) / req.mem_per_rank;
  return static_cast<int>(std::min<std::uint64_t>(static_cast<std::uint64_t>(free), by_mem));
}

Result<std::vector<Cell>> Matrix::cells_for(const Row& row, const Request& req) const {
  std::vector<Cell> cells;
  if (req.nodes == 0) {
    // Packed: fill nodes in hostfile order.
    int left = req.ranks;
    for (std::size_t n = 0; n < nodes_.size() && left > 0; ++n) {
      int take = std::min(room(row, n, req), left);
      if (take <= 0) continue;
      cells.push_back({n, take});
      left -= take;
    }
    if (left > 0) return fail(Errc::busy, "row full");
    return cells;
  }
  // Spread: `nodes` nodes, ranks as even as possible, the larger shares first.
  int base = req.ranks / req.nodes, extra = req.ranks % req.nodes;
  int want = base + (extra ? 1 : 0);
  for (std::size_t n = 0; n < nodes_.size() && static_cast<int>(cells.size()) < req.nodes; ++n) {
    if (room(row, n, req) >= want) cells.push_back({n, 0});
  }
  if (static_cast<int>(cells.size()) < req.nodes) return fail(Errc::busy, "row full");
  for (std::size_t i = 0; i < cells.size(); ++i)
    cells[i].ranks = base + (static_cast<int>(i) < extra ? 1 : 0);
  return cells;
}

// Whether the job could fit on an empty cluster of these nodes (memory counted on the
// nodes whose size is known); invalid_argument when it never could.
Result<void> Matrix::check_request(JobId job, const Request& req) const {
  if (find(job))
    return fail(Errc::invalid_argument, "job " + std::to_string(job) + " is already placed");
  if (req.ranks <= 0) return fail(Errc::invalid_argument, "a job needs at least one rank");
  if (req.nodes < 0 || static_cast<std::size_t>(req.nodes) > nodes_.size())
    return fail(Errc::invalid_argument, "job asks for " + std::to_string(req.nodes) +
                                            " nodes, the cluster has " +
                                            std::to_string(nodes_.size()));
  if (req.nodes > req.ranks)
    return fail(Errc::invalid_argument, "job asks for " + std::to_string(req.nodes) +
                                            " nodes but has only " + std::to_string(req.ranks) +
                                            " ranks");
  if (req.overcommit <= 0)
    return fail(Errc::invalid_argument, "the overcommit factor must be positive");
  // Ranks each node could hold on its own: its slots, and its memory when known.
  int total = 0, total_slots = 0;
  std::vector<int> caps;
  for (const auto& n : nodes_) {
    int cap = n.slots;
    if (req.mem_per_rank > 0 && n.mem > 0)
      cap = static_cast<int>(std::min<std::uint64_t>(
          static_cast<std::uint64_t>(cap),
          static_cast<std::uint64_t>(req.overcommit * static_cast<double>(n.mem)) /
              req.mem_per_rank));
    total += cap;
    total_slots += n.slots;
    caps.push_back(cap);
  }
  std::string mem_why;
  if (req.mem_per_rank > 0)
    mem_why = " with " + format_size_bytes(static_cast<std::int64_t>(req.mem_per_rank)) +
              " a rank (overcommit " + factor_text(req.overcommit) + ")";
  if (req.ranks > total_slots)
    return fail(Errc::invalid_argument, "job needs " + std::to_string(req.ranks) +
                                            " ranks, the cluster has " +
                                            std::to_string(total_slots) + " slots in all");
  if (req.ranks > total)
    return fail(Errc::invalid_argument, "job needs " + std::to_string(req.ranks) +
                                            " ranks, the nodes' memory holds " +
                                            std::to_string(total) + " in all" + mem_why);
  if (req.nodes > 0) {
    int want = (req.ranks + req.nodes - 1) / req.nodes;
    auto big = std::count_if(caps.begin(), caps.end(), [&](int c) { return c >= want; });
    if (big < req.nodes)
      return fail(Errc::invalid_argument, "job needs " + std::to_string(want) +
                                              " ranks on each of " + std::to_string(req.nodes) +
                                              " nodes, only " + std::to_string(big) +
                                              " nodes can hold that many" + mem_why);
  }
  return {};
}

void Matrix::add(Row& row, const Placement& p, int sign) {
  for (const auto& c : p.cells) {
    row.used[c.node] += sign * c.ranks;
    row.free -= sign * c.ranks;
    auto bytes = p.mem_per_rank * static_cast<std::uint64_t>(c.ranks);
    if (sign > 0)
      committed_[c.node] += bytes;
    else
      committed_[c.node] -= bytes;
  }
  if (sign > 0)
    row.jobs.push_back(p.job);
  else
    std::erase(row.jobs, p.job);
}

Result<Placement> Matrix::place(JobId job, int ranks, int nodes) {
  return place(job, Request{ranks, nodes, 0, 1.0});
}

Result<Placement> Matrix::place(JobId job, const Request& req) {
  if (auto ok = check_request(job, req); !ok) return std::unexpected(ok.error());
  for (std::size_t r = 0; r <= rows_.size(); ++r) {
    bool fresh = r == rows_.size();
    if (fresh && static_cast<int>(rows_.size()) >= max_rows_) break;
    Row spare = fresh ? new_row() : Row{};
    Row& row = fresh ? spare : rows_[r];
    if (row.free < req.ranks) continue;
    auto cells = cells_for(row, req);
    if (!cells) continue;
    if (fresh) rows_.push_back(std::move(spare));
    Placement p{job, static_cast<int>(r), std::move(*cells), req.mem_per_rank};
    add(rows_[r], p, +1);
    placements_.emplace(job, p);
    return p;
  }
  return fail(Errc::busy, "no room for job " + std::to_string(job));
}

// Why a job that could fit on an empty cluster does not fit now.
std::string Matrix::why_not(JobId job, const Request& req) const {
  auto id = "no room for job " + std::to_string(job) + ": ";
  bool any_open =
      std::any_of(nodes_.begin(), nodes_.end(), [](const NodeSpec& n) { return n.open; });
  if (!any_open) return id + "every node is drained or down";
  if (req.mem_per_rank > 0) {
    // Would it fit if memory were no object? Then memory is what it waits for.
    Request slots_only = req;
    slots_only.mem_per_rank = 0;
    bool by_slots = static_cast<int>(rows_.size()) < max_rows_ && cells_for(new_row(), slots_only);
    for (const auto& row : rows_)
      by_slots = by_slots || cells_for(row, slots_only).has_value();
    if (by_slots) {
      bool unknown = std::any_of(nodes_.begin(), nodes_.end(),
                                 [](const NodeSpec& n) { return n.open && n.mem == 0; });
      return id + "not enough memory (" +
             format_size_bytes(static_cast<std::int64_t>(req.mem_per_rank)) +
             " a rank would take nodes past " + factor_text(req.overcommit) +
             " times their memory" +
             (unknown ? "; some nodes have not reported their memory" : "") + ")";
    }
  }
  return id + "all " + std::to_string(max_rows_) +
         " time slots are full on the nodes it needs (or they are drained)";
}

Result<void> Matrix::place_at(const Placement& p, const Request& req) {
  if (find(p.job))
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) + " is already placed");
  if (p.row < 0 || p.row >= max_rows_ || p.cells.empty())
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) + ": no such placement");
  Row spare = new_row();
  const Row& row = p.row < rows() ? rows_[p.row] : spare;
  for (const auto& c : p.cells)
    if (c.node >= nodes_.size() || room(row, c.node, req) < c.ranks)
      return fail(Errc::busy, "job " + std::to_string(p.job) + ": no room at that placement");
  while (static_cast<int>(rows_.size()) <= p.row)
    rows_.push_back(new_row());
  Placement q = p;
  q.mem_per_rank = req.mem_per_rank;
  add(rows_[p.row], q, +1);
  placements_.emplace(p.job, q);
  return {};
}

Result<void> Matrix::restore(const Placement& p) {
  if (find(p.job))
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) + " is already placed");
  if (p.row < 0 || p.row >= max_rows_)
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) + ": time slot " +
                                            std::to_string(p.row) + " is out of range");
  while (static_cast<int>(rows_.size()) <= p.row)
    rows_.push_back(new_row());
  if (p.cells.empty() || !fits(rows_[p.row], p.cells))
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) +
                                            ": its recorded placement no longer fits the nodes");
  add(rows_[p.row], p, +1);
  placements_.emplace(p.job, p);
  return {};
}

Result<void> Matrix::remove(JobId job) {
  auto it = placements_.find(job);
  if (it == placements_.end())
    return fail(Errc::not_found, "no job " + std::to_string(job) + " in the matrix");
  add(rows_[it->second.row], it->second, -1);
  placements_.erase(it);
  while (!rows_.empty() && rows_.back().jobs.empty())
    rows_.pop_back();
  return {};
}

const Placement* Matrix::find(JobId job) const {
  auto it = placements_.find(job);
  return it == placements_.end() ? nullptr : &it->second;
}

std::vector<JobId> Matrix::placed_jobs() const {
  std::vector<JobId> out;
  out.reserve(placements_.size());
  for (const auto& [id, p] : placements_)
    out.push_back(id);
  return out;
}

std::set<JobId> Matrix::running_for(int active) const {
  std::set<JobId> run;
  if (rows_.empty()) return run;
  std::vector<int> used(nodes_.size(), 0);
  int n = rows();
  for (int k = 0; k < n; ++k) {
    const Row& row = rows_[(active + k) % n];
    for (JobId j : row.jobs) {
      const Placement* p = find(j);
      bool free = std::all_of(p->cells.begin(), p->cells.end(), [&](const Cell& c) {
        return used[c.node] + c.ranks <= nodes_[c.node].slots;
      });
      if (!free) continue;
      for (const auto& c : p->cells)
        used[c.node] += c.ranks;
      run.insert(j);
    }
  }
  return run;
}

Matrix::Step Matrix::diff_to(std::set<JobId> next) {
  Step s;
  s.active_row = active_;
  for (JobId j : running_)
    if (!next.contains(j) && find(j)) s.stopped.push_back(j);
  for (JobId j : next)
    if (!running_.contains(j)) s.started.push_back(j);
  running_ = std::move(next);
  return s;
}

Matrix::Step Matrix::advance() {
  int n = rows();
  if (n == 0) {
    active_ = 0;
    return diff_to({});
  }
  for (int k = 1; k <= n; ++k) {
    int r = (active_ + k) % n;
    if (!rows_[r].jobs.empty()) {
      active_ = r;
      break;
    }
  }
  return diff_to(running_for(active_));
}

Matrix::Step Matrix::recompute() {
  int n = rows();
  if (n == 0) {
    active_ = 0;
    return diff_to({});
  }
  if (active_ >= n || rows_[active_].jobs.empty()) {
    for (int k = 0; k < n; ++k)
      if (!rows_[k].jobs.empty()) {
        active_ = k;
        break;
      }
  }
  return diff_to(running_for(active_));
}

std::vector<JobId> Matrix::jobs_on(std::size_t node) const {
  std::vector<JobId> out;
  for (const auto& row : rows_)
    for (JobId j : row.jobs) {
      const Placement* p = find(j);
      for (const auto& c : p->cells)
        if (c.node == node) out.push_back(j);
    }
  return out;
}

std::vector<std::size_t> Matrix::idle_nodes() const {
  std::vector<bool> busy(nodes_.size(), false);
  for (JobId j : running_)
    if (const Placement* p = find(j))
      for (const auto& c : p->cells)
        busy[c.node] = true;
  std::vector<std::size_t> out;
  for (std::size_t n = 0; n < nodes_.size(); ++n)
    if (!busy[n]) out.push_back(n);
  return out;
}

std::string Matrix::render() const {
  std::ostringstream out;
  out << "slot ";
  for (const auto& n : nodes_)
    out << " " << n.name;
  out << "\n";
  for (int r = 0; r < rows(); ++r) {
    out << (r == active_ ? "*" : " ") << r << "   ";
    for (std::size_t n = 0; n < nodes_.size(); ++n) {
      std::string cell;
      for (JobId j : rows_[r].jobs) {
        for (const auto& c : find(j)->cells)
          if (c.node == n) cell += (cell.empty() ? "" : ",") + std::to_string(j);
      }
      out << " " << (cell.empty() ? "-" : cell);
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace dynamos::gang
