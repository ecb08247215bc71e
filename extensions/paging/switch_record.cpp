#include "extensions/paging/switch_record.hpp"

namespace dynamos::paging {

nlohmann::ordered_json to_json_value(const SwitchRecord& r) {
  return {{"switch", r.number},
          {"out_job", r.out_job},
          {"in_job", r.in_job},
          {"policy", r.policy},
          {"effective_policy", r.effective},
          {"switch_s", r.switch_s},
          {"pageout_s", r.pageout_s},
          {"prefetch_s", r.prefetch_s},
          {"free_bytes", r.free_bytes},
          {"ws_recorded", r.ws_recorded},
          {"ws_pages", r.ws_pages},
          {"pages_out", r.pages_out},
          {"pages_in", r.pages_in},
          {"background_pages_out", r.background_pages_out},
          {"background_pages_in", r.background_pages_in},
          {"majflt_first_s", r.majflt_first_s},
          {"lost_s", r.lost_s},
          {"quantum_s", r.quantum_s},
          {"processes_gone", r.processes_gone},
          {"warning", r.warning}};
}

std::string to_json(const SwitchRecord& r) {
  return to_json_value(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

SwitchRecord switch_record_from(const nlohmann::ordered_json& j) {
  SwitchRecord r;
  j.at("switch").get_to(r.number);
  j.at("out_job").get_to(r.out_job);
  j.at("in_job").get_to(r.in_job);
  j.at("policy").get_to(r.policy);
  j.at("effective_policy").get_to(r.effective);
  j.at("switch_s").get_to(r.switch_s);
  j.at("pageout_s").get_to(r.pageout_s);
  j.at("prefetch_s").get_to(r.prefetch_s);
  j.at("free_bytes").get_to(r.free_bytes);
  j.at("ws_recorded").get_to(r.ws_recorded);
  j.at("ws_pages").get_to(r.ws_pages);
  j.at("pages_out").get_to(r.pages_out);
  j.at("pages_in").get_to(r.pages_in);
  j.at("background_pages_out").get_to(r.background_pages_out);
  j.at("background_pages_in").get_to(r.background_pages_in);
  j.at("majflt_first_s").get_to(r.majflt_first_s);
  j.at("lost_s").get_to(r.lost_s);
  j.at("quantum_s").get_to(r.quantum_s);
  j.at("processes_gone").get_to(r.processes_gone);
  j.at("warning").get_to(r.warning);
  return r;
}

}  // namespace dynamos::paging
