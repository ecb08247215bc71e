#include "extensions/paging/state.hpp"

#include <nlohmann/json.hpp>

namespace dynamos::paging {

using json = nlohmann::ordered_json;

namespace {

json to_json(const WorkingSet& ws) {
  json processes = json::array();
  for (const auto& p : ws.processes) {
    json runs = json::array();
    for (const auto& r : p.runs)
      runs.push_back({r.start, r.length});
    processes.push_back({{"pid", p.pid}, {"runs", std::move(runs)}});
  }
  return processes;
}

WorkingSet working_set_from(const json& j) {
  WorkingSet ws;
  for (const auto& p : j) {
    ProcessRuns runs{p.at("pid").get<pid_t>(), {}};
    for (const auto& r : p.at("runs"))
      runs.runs.push_back({r.at(0).get<uintptr_t>(), r.at(1).get<size_t>()});
    ws.processes.push_back(std::move(runs));
  }
  return ws;
}

json to_json(const Job& job) {
  json rest = json::array();
  for (const auto& ws : job.prefetch_rest)
    rest.push_back(to_json(ws));
  return {{"id", job.id},
          {"name", job.name},
          {"cgroup", job.cgroup},
          {"pids", job.pids},
          {"ws", to_json(job.ws)},
          {"ws_recorded", job.ws_recorded},
          {"sample", to_json(job.sample)},
          {"sample_ns", job.sample_ns},
          {"running", job.running},
          {"resumed_ns", job.resumed_ns},
          {"majflt_at_resume", job.majflt_at_resume},
          {"work_at_resume", job.work_at_resume ? json(*job.work_at_resume) : json(nullptr)},
          {"record", job.record},
          {"prefetch_rest", std::move(rest)}};
}

Job job_from(const json& j) {
  Job job;
  j.at("id").get_to(job.id);
  j.at("name").get_to(job.name);
  j.at("cgroup").get_to(job.cgroup);
  j.at("pids").get_to(job.pids);
  job.ws = working_set_from(j.at("ws"));
  j.at("ws_recorded").get_to(job.ws_recorded);
  job.sample = working_set_from(j.at("sample"));
  j.at("sample_ns").get_to(job.sample_ns);
  j.at("running").get_to(job.running);
  j.at("resumed_ns").get_to(job.resumed_ns);
  j.at("majflt_at_resume").get_to(job.majflt_at_resume);
  if (!j.at("work_at_resume").is_null()) job.work_at_resume = j["work_at_resume"].get<double>();
  j.at("record").get_to(job.record);
  for (const auto& ws : j.at("prefetch_rest"))
    job.prefetch_rest.push_back(working_set_from(ws));
  return job;
}

}  // namespace

std::string export_state(const PagingState& s) {
  json jobs = json::array();
  for (const auto& [id, job] : s.jobs)
    jobs.push_back(to_json(job));
  json history = json::array();
  for (const auto& r : s.history)
    history.push_back(to_json_value(r));
  json out = {{"format", kStateFormat},
              {"jobs", std::move(jobs)},
              {"history", std::move(history)},
              {"switches", s.switches},
              {"pending_out", s.pending_out},
              {"has_pending_out", s.has_pending_out},
              {"pending_start_ns", s.pending_start_ns},
              {"background_job", s.background_job},
              {"background_last_ns", s.background_last_ns},
              {"background_credit", s.background_credit}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<PagingState> import_state(std::string_view text) {
  try {
    json in = json::parse(text);
    if (!in.is_object() || in.value("format", std::string()) != kStateFormat)
      return fail(Errc::version_mismatch,
                  "the state handed over is not " + std::string(kStateFormat));
    PagingState s;
    for (const auto& j : in.at("jobs")) {
      Job job = job_from(j);
      s.jobs[job.id] = std::move(job);
    }
    for (const auto& r : in.at("history"))
      s.history.push_back(switch_record_from(r));
    in.at("switches").get_to(s.switches);
    in.at("pending_out").get_to(s.pending_out);
    in.at("has_pending_out").get_to(s.has_pending_out);
    in.at("pending_start_ns").get_to(s.pending_start_ns);
    in.at("background_job").get_to(s.background_job);
    in.at("background_last_ns").get_to(s.background_last_ns);
    in.at("background_credit").get_to(s.background_credit);
    return s;
  } catch (const json::exception& e) {
    return fail(Errc::invalid_argument, std::string("the state handed over: ") + e.what());
  }
}

}  // namespace dynamos::paging
