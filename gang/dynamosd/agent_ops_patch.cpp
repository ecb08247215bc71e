// Node ops `patch` and `revert` (gang/job_patch.hpp): the remote live update of
// core/remote_update.hpp applied to every rank of a job on this node, all or none.
//
// Why this is safe against gang switches: the op holds the job (NodeAgent::hold_job)
// from before it checks the freezer until its last rank is detached, so switches, which
// go on meanwhile on the session's thread, neither freeze nor thaw it on this node; the
// hold's end freezes it if a switch wanted it frozen. A job that is frozen (or freezing) when the
// op starts is refused with jobpatch::frozen_refusal(): a frozen task cannot reach a ptrace stop,
// and thawing it out of turn would break the gang. The CLI retries once the job runs. The ranks are
// never left stopped or traced: each is detached before the next.
//
// Permission: gangd has checked that the caller owns the job. Here, on the node, a
// caller other than root may only touch processes whose every uid is theirs, and
// the patch object is opened with the caller's file-system ids (and must be theirs,
// or readable by their group or by everyone): the agent, root, must not read a file
// for a user that the user could not read.
#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>

#include "base/file.hpp"
#include "core/scope_guard.hpp"
#include "gang/dynamosd/agent_ops.hpp"
#include "gang/job_patch.hpp"
#include "gang/node_ops.hpp"
#include "kernelside/fs.hpp"

namespace dynamos::gang {

namespace {

namespace ks = kernelside;
namespace jp = jobpatch;
using Clock = std::chrono::steady_clock;

double ms_of(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::string first_word(const std::string& path) {
  auto text = ks::read_text(path);
  std::istringstream in(text ? *text : std::string());
  std::string w;
  in >> w;
  return w;
}

// Whether the freezer holds the group: frozen, or on its way there.
bool freezer_holds(const ks::Group& g) {
  const std::string dir = g.dir(ks::Controller::freezer);
  if (dir.empty()) return false;
  if (g.layout().serving(ks::Controller::freezer) == ks::CgroupVersion::v1)
    return first_word(dir + "/freezer.state") != "THAWED";
  return first_word(dir + "/cgroup.freeze") == "1";
}

struct ProcIds {
  uid_t uid[4] = {};  // real, effective, saved, file system
  gid_t gid = 0;      // real
};

Result<ProcIds> proc_ids(pid_t pid) {
  // read_text, not an ifstream: a process that exits mid-read fails it with ESRCH.
  auto text = ks::read_text("/proc/" + std::to_string(pid) + "/status");
  if (!text) return fail(Errc::not_found, "no process " + std::to_string(pid));
  std::istringstream in(*text);
  ProcIds ids;
  bool uid = false, gid = false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    std::string key;
    s >> key;
    if (key == "Uid:")
      uid = static_cast<bool>(s >> ids.uid[0] >> ids.uid[1] >> ids.uid[2] >> ids.uid[3]);
    if (key == "Gid:") gid = static_cast<bool>(s >> ids.gid);
  }
  if (!uid || !gid) return fail(Errc::not_found, "no process " + std::to_string(pid));
  return ids;
}

struct Ranks {
  std::vector<pid_t> pids;
  gid_t gid = 0;  // the first rank's group: the caller's, when the caller is not root
  std::optional<NodeAgent::JobHold> hold;  // no switch freezes the job meanwhile
};

// The job's processes on this node, once it is known that they may be patched now.
Result<Ranks> job_ranks(NodeAgent& agent, const std::string& node, JobId job, uid_t caller) {
  const std::string name = "job " + std::to_string(job);
  auto jobs = agent.jobs();
  if (std::find(jobs.begin(), jobs.end(), job) == jobs.end())
    return fail(Errc::not_found, name + " has no group on node " + node);
  auto hold = agent.hold_job(job);  // before the freezer check: no switch after it
  if (!hold) return std::unexpected(hold.error());
  auto group = agent.job_group(job);
  if (!group) return std::unexpected(group.error());
  auto pids = group->pids_recursive();
  if (!pids) return std::unexpected(with_context(pids.error(), name + " on node " + node));
  if (pids->empty()) return fail(Errc::state, name + " has no processes on node " + node);
  if (freezer_holds(*group)) return fail(Errc::state, jp::frozen_refusal(job, node));
  Ranks ranks;
  ranks.hold.emplace(std::move(*hold));
  ranks.pids = std::move(*pids);
  for (pid_t pid : ranks.pids) {
    auto ids = proc_ids(pid);
    if (!ids)
      return fail(Errc::not_found,
                  "rank " + std::to_string(pid) + " of " + name + " on node " + node + " is gone");
    if (pid == ranks.pids.front()) ranks.gid = ids->gid;
    if (caller == 0) continue;
    for (uid_t u : ids->uid)
      if (u != caller)
        return fail(Errc::not_permitted, "rank " + std::to_string(pid) + " of " + name +
                                             " on node " + node + " runs as uid " +
                                             std::to_string(u) + ", not as the caller (uid " +
                                             std::to_string(caller) + ")");
  }
  return ranks;
}

// Restores the thread's file-system ids when it goes out of scope.
class FsIds {
 public:
  FsIds(uid_t uid, gid_t gid)
      : old_gid_(setfsgid(static_cast<uid_t>(gid))), old_uid_(setfsuid(uid)) {}
  ~FsIds() {
    setfsuid(static_cast<uid_t>(old_uid_));
    setfsgid(static_cast<uid_t>(old_gid_));
  }
  FsIds(const FsIds&) = delete;
  FsIds& operator=(const FsIds&) = delete;

 private:
  int old_gid_, old_uid_;
};

// A patch object read as the caller could read it. Opened O_NONBLOCK|O_NOFOLLOW and
// refused unless a regular file (base/file.hpp): a FIFO must not block the agent.
Result<std::string> read_as_caller(const std::string& path, uid_t uid, gid_t gid) {
  if (uid == 0) return core::read_patch_object(path);
  Result<UniqueFd> fd = fail(Errc::state, "not opened");
  {
    FsIds as(uid, gid);  // on this thread only: setfsuid is per thread
    fd = open_regular_file(path);
  }
  if (!fd && fd.error().sys_errno == EACCES)
    return fail(Errc::not_permitted, path + ": uid " + std::to_string(uid) + " may not read it");
  if (!fd) return std::unexpected(fd.error());
  struct stat st {};
  const bool readable = fstat(fd->get(), &st) == 0 &&
                        ((st.st_uid == uid && (st.st_mode & S_IRUSR)) || (st.st_mode & S_IROTH) ||
                         (st.st_gid == gid && (st.st_mode & S_IRGRP)));
  if (!readable)
    return fail(Errc::not_permitted, path + ": uid " + std::to_string(uid) + " may not read it");
  auto bytes = read_fd(fd->get(), path, core::kMaxPatchObject);
  if (!bytes) return std::unexpected(bytes.error());
  if (auto ok = core::check_patch_object(path, *bytes); !ok) return std::unexpected(ok.error());
  return bytes;
}

std::string node_name(const NodeAgent& agent) {
  const std::string& p = agent.node_path();
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string pid_list(const std::vector<jp::RankUpdate>& ranks) {
  std::string s;
  for (const auto& r : ranks)
    s += (s.empty() ? "" : ", ") + std::to_string(r.pid);
  return s;
}

// What patch and revert start from: this node's name, the request's arguments and
// the job's ranks here.
template <class Args>
struct JobRequest {
  std::string node;
  Args args;
  Ranks ranks;
};

template <class Args>
Result<JobRequest<Args>> job_request(NodeAgent& agent, const proto::NodeRequest& r,
                                     Result<Args> (*parse)(std::span<const std::string>)) {
  std::string node = node_name(agent);
  auto args = parse(r.args);
  if (!args) return std::unexpected(args.error());
  auto ranks = job_ranks(agent, node, args->job, r.uid);
  if (!ranks) return std::unexpected(ranks.error());
  return JobRequest<Args>{std::move(node), std::move(*args), std::move(*ranks)};
}

Result<std::string> patch_job(NodeAgent& agent, const AgentOpsContext& ctx,
                              const proto::NodeRequest& r) {
  auto request = job_request(agent, r, jp::parse_patch_args);
  if (!request) return std::unexpected(request.error());
  const auto& [node, args, ranks] = *request;

  core::RemotePatchRequest req;
  req.requester = core::Requester{r.uid, std::nullopt};  // re-checked once attached
  req.mode = args.mode;
  req.timeout = args.timeout;
  std::map<std::string, std::string> staged;  // object -> its content-named copy
  core::ScopeGuard release([&staged] {        // loaded ranks keep their mappings
    for (const auto& [object, copy] : staged)
      core::release_staged_object(copy);
  });
  for (auto rep : args.replacements) {
    if (!staged.contains(rep.object)) {
      auto bytes = read_as_caller(rep.object, r.uid, ranks.gid);
      if (!bytes) return std::unexpected(bytes.error());
      auto copy = core::stage_patch_object(rep.object, *bytes);
      if (!copy) return std::unexpected(copy.error());
      staged[rep.object] = *copy;
    }
    rep.staged = staged[rep.object];
    req.replacements.push_back(std::move(rep));
  }

  const auto t0 = Clock::now();
  jp::NodeUpdates out{node, args.job, 0, {}};
  for (pid_t pid : ranks.pids) {
    auto res = core::patch_process(pid, req);
    if (res) {
      out.ranks.push_back({pid, res->id, ms_of(res->stopped), ms_of(res->took)});
      continue;
    }
    // All or none on this node: take the update back out of the ranks done so far.
    std::string why = "rank " + std::to_string(pid) + " of job " + std::to_string(args.job) +
                      " on node " + node + ": " + res.error().message();
    std::vector<jp::RankUpdate> reverted;
    std::string stuck;
    for (auto it = out.ranks.rbegin(); it != out.ranks.rend(); ++it) {
      if (auto rv = core::revert_process_update(it->pid, it->update, args.mode, args.timeout,
                                                std::chrono::milliseconds(1000),
                                                core::Requester{r.uid, std::nullopt});
          rv)
        reverted.push_back(*it);
      else
        stuck += " " + std::to_string(it->pid) + ":" + std::to_string(it->update) + " (" +
                 rv.error().message() + ")";
    }
    if (!reverted.empty()) why += "; reverted in rank(s) " + pid_list(reverted) + " here";
    if (!stuck.empty()) why += "; NOT reverted in rank(s)" + stuck;
    if (ctx.log) ctx.log.warning("patch job " + std::to_string(args.job) + ": " + why);
    return fail(res.error().code, why);
  }
  out.took_ms = ms_of(Clock::now() - t0);
  if (ctx.updates) ctx.updates->applied += out.ranks.size();
  if (ctx.log)
    ctx.log("patch job " + std::to_string(args.job) + ": " + std::to_string(out.ranks.size()) +
            " rank(s) patched in " + std::to_string(out.took_ms) + " ms");
  return jp::to_json(out);
}

Result<std::string> revert_job(NodeAgent& agent, const AgentOpsContext& ctx,
                               const proto::NodeRequest& r) {
  auto request = job_request(agent, r, jp::parse_revert_args);
  if (!request) return std::unexpected(request.error());
  const auto& [node, args, ranks] = *request;
  std::vector<jp::RevertTarget> todo;
  for (const auto& t : args.targets) {
    if (t.pid == 0) {
      for (pid_t p : ranks.pids)
        todo.push_back({p, t.update});
    } else if (std::find(ranks.pids.begin(), ranks.pids.end(), t.pid) == ranks.pids.end()) {
      return fail(Errc::not_found, "process " + std::to_string(t.pid) + " is not a rank of job " +
                                       std::to_string(args.job) + " on node " + node);
    } else {
      todo.push_back(t);
    }
  }
  const auto t0 = Clock::now();
  jp::NodeUpdates out{node, args.job, 0, {}};
  std::string failed;
  std::optional<Errc> code;
  for (const auto& t : todo) {
    auto res = core::revert_process_update(
        t.pid, t.update, args.mode, std::chrono::milliseconds(2000),
        std::chrono::milliseconds(1000), core::Requester{r.uid, std::nullopt});
    if (res) {
      out.ranks.push_back({t.pid, t.update, ms_of(res->stopped), ms_of(res->took)});
      continue;
    }
    if (!code) code = res.error().code;
    failed += std::string(failed.empty() ? "" : "; ") + "rank " + std::to_string(t.pid) +
              " update " + std::to_string(t.update) + ": " + res.error().message();
  }
  out.took_ms = ms_of(Clock::now() - t0);
  if (ctx.updates) ctx.updates->reverted += out.ranks.size();  // some may have failed
  if (code) {
    std::string why = "node " + node + ": " + failed;
    if (!out.ranks.empty()) why += " (reverted in rank(s) " + pid_list(out.ranks) + ")";
    if (ctx.log) ctx.log.warning("revert job " + std::to_string(args.job) + ": " + why);
    return fail(*code, why);
  }
  if (ctx.log)
    ctx.log("revert job " + std::to_string(args.job) + ": " + std::to_string(out.ranks.size()) +
            " rank(s) reverted");
  return jp::to_json(out);
}

}  // namespace

void add_patch_ops(AgentOpsContext& ctx) {
  NodeAgent& agent = ctx.agent;
  AgentOpsContext copy = ctx;  // the op outlives the caller's context object
  // A request refused or failed counts once (the ranks it did revert count as reverted).
  auto counted = [](std::atomic<std::uint64_t>* failures, Result<std::string> r) {
    if (!r && failures) ++*failures;
    return r;
  };
  auto* n = copy.updates;
  agent.add_op(std::string(ops::patch), [&agent, copy, counted, n](const proto::NodeRequest& r) {
    return counted(n ? &n->patch_failures : nullptr, patch_job(agent, copy, r));
  });
  agent.add_op(std::string(ops::revert), [&agent, copy, counted, n](const proto::NodeRequest& r) {
    return counted(n ? &n->revert_failures : nullptr, revert_job(agent, copy, r));
  });
}

}  // namespace dynamos::gang
