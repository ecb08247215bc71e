#include "gang/gangd/matrix.hpp"

#include <algorithm>
#include <sstream>

namespace dynamos::gang {

int Placement::ranks() const {
  int n = 0;
  for (const auto& c : cells)
    n += c.ranks;
  return n;
}

Matrix::Matrix(std::vector<NodeSpec> nodes, int max_rows)
    : nodes_(std::move(nodes)), max_rows_(max_rows) {}

std::size_t Matrix::node_index(const std::string& name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name) return i;
  return static_cast<std::size_t>(-1);
}

bool Matrix::fits(const Row& row, const std::vector<Cell>& cells) const {
  for (const auto& c : cells) {
    if (c.node >= nodes_.size() || c.ranks <= 0) return false;
    if (row.used[c.node] + c.ranks > nodes_[c.node].slots) return false;
  }
  return true;
}

Result<std::vector<Cell>> Matrix::cells_for(const Row& row, int ranks, int nodes) const {
  std::vector<Cell> cells;
  if (nodes == 0) {
    // Packed: fill nodes in hostfile order.
    int left = ranks;
    for (std::size_t n = 0; n < nodes_.size() && left > 0; ++n) {
      int free = nodes_[n].slots - row.used[n];
      if (free <= 0) continue;
      int take = std::min(free, left);
      cells.push_back({n, take});
      left -= take;
    }
    if (left > 0) return fail(Errc::busy, "row full");
    return cells;
  }
  // Spread: `nodes` nodes, ranks as even as possible, the larger shares first.
  int base = ranks / nodes, extra = ranks % nodes;
  int want = base + (extra ? 1 : 0);
  for (std::size_t n = 0; n < nodes_.size() && static_cast<int>(cells.size()) < nodes; ++n) {
    if (nodes_[n].slots - row.used[n] >= want) cells.push_back({n, 0});
  }
  if (static_cast<int>(cells.size()) < nodes) return fail(Errc::busy, "row full");
  for (std::size_t i = 0; i < cells.size(); ++i)
    cells[i].ranks = base + (static_cast<int>(i) < extra ? 1 : 0);
  return cells;
}

Result<Placement> Matrix::place(JobId job, int ranks, int nodes) {
  if (find(job))
    return fail(Errc::invalid_argument, "job " + std::to_string(job) + " is already placed");
  if (ranks <= 0) return fail(Errc::invalid_argument, "a job needs at least one rank");
  if (nodes < 0 || static_cast<std::size_t>(nodes) > nodes_.size())
    return fail(Errc::invalid_argument, "job asks for " + std::to_string(nodes) +
                                            " nodes, the cluster has " +
                                            std::to_string(nodes_.size()));
  if (nodes > ranks)
    return fail(Errc::invalid_argument, "job asks for " + std::to_string(nodes) +
                                            " nodes but has only " + std::to_string(ranks) +
                                            " ranks");
  int total = 0;
  std::vector<int> caps;
  for (const auto& n : nodes_) {
    total += n.slots;
    caps.push_back(n.slots);
  }
  if (ranks > total)
    return fail(Errc::invalid_argument, "job needs " + std::to_string(ranks) +
                                            " ranks, the cluster has " + std::to_string(total) +
                                            " slots in all");
  if (nodes > 0) {
    int want = (ranks + nodes - 1) / nodes;
    auto big = std::count_if(caps.begin(), caps.end(), [&](int c) { return c >= want; });
    if (big < nodes)
      return fail(Errc::invalid_argument, "job needs " + std::to_string(want) +
                                              " ranks on each of " + std::to_string(nodes) +
                                              " nodes, only " + std::to_string(big) +
                                              " nodes have that many slots");
  }
  for (std::size_t r = 0; r <= rows_.size(); ++r) {
    if (r == rows_.size()) {
      if (static_cast<int>(rows_.size()) >= max_rows_)
        return fail(Errc::busy, "no room for job " + std::to_string(job) + ": all " +
                                    std::to_string(max_rows_) +
                                    " time slots are full on the nodes it needs");
      rows_.push_back(Row{{}, std::vector<int>(nodes_.size(), 0)});
    }
    auto cells = cells_for(rows_[r], ranks, nodes);
    if (!cells) continue;
    Placement p{job, static_cast<int>(r), std::move(*cells)};
    for (const auto& c : p.cells)
      rows_[r].used[c.node] += c.ranks;
    rows_[r].jobs.push_back(job);
    placements_.push_back(p);
    return p;
  }
  return fail(Errc::busy, "no room for job " + std::to_string(job));  // not reached
}

Result<void> Matrix::restore(const Placement& p) {
  if (find(p.job))
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) + " is already placed");
  if (p.row < 0 || p.row >= max_rows_)
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) + ": time slot " +
                                            std::to_string(p.row) + " is out of range");
  while (static_cast<int>(rows_.size()) <= p.row)
    rows_.push_back(Row{{}, std::vector<int>(nodes_.size(), 0)});
  if (p.cells.empty() || !fits(rows_[p.row], p.cells))
    return fail(Errc::invalid_argument, "job " + std::to_string(p.job) +
                                            ": its recorded placement no longer fits the nodes");
  for (const auto& c : p.cells)
    rows_[p.row].used[c.node] += c.ranks;
  rows_[p.row].jobs.push_back(p.job);
  placements_.push_back(p);
  return {};
}

Result<void> Matrix::remove(JobId job) {
  auto it = std::find_if(placements_.begin(), placements_.end(),
                         [&](const Placement& p) { return p.job == job; });
  if (it == placements_.end())
    return fail(Errc::not_found, "no job " + std::to_string(job) + " in the matrix");
  Row& row = rows_[it->row];
  for (const auto& c : it->cells)
    row.used[c.node] -= c.ranks;
  std::erase(row.jobs, job);
  placements_.erase(it);
  while (!rows_.empty() && rows_.back().jobs.empty())
    rows_.pop_back();
  return {};
}

const Placement* Matrix::find(JobId job) const {
  for (const auto& p : placements_)
    if (p.job == job) return &p;
  return nullptr;
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
