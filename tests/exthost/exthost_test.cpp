// The extension host: load, list, set, unload, and the ways loading is refused.
#include <dlfcn.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "host_fixture.hpp"

namespace dynamos::core::testing {
namespace {

using ExtHost = HostFixture;

const TunableInfo* find(const ExtensionInfo& info, const std::string& name) {
  for (const auto& t : info.tunables)
    if (t.spec.name == name) return &t;
  return nullptr;
}

std::string read_back(ExtensionHost& host, const std::string& key) {
  auto r = host.call("every", "get", key);
  EXPECT_TRUE(r) << r.error().message();
  return r ? *r : "";
}

TEST_F(ExtHost, LoadListsTunablesOfEveryType) {
  make_host();
  auto info = host->load(EXT_EVERY);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->name, "every");
  EXPECT_EQ(info->version, "1.0");
  EXPECT_EQ(info->path, EXT_EVERY);
  EXPECT_EQ(info->hooks, (std::vector<Hook>{Hook::tick, Hook::call}));

  auto listed = host->list();
  ASSERT_EQ(listed.size(), 1u);
  struct Expect {
    const char* name;
    TunableType type;
    const char* text;
    const char* range;
    bool runtime;
  };
  const Expect expected[] = {
      {"level", TunableType::integer, "10", "[0, 100]", true},
      {"ratio", TunableType::floating, "0.5", "[0, 1]", true},
      {"period", TunableType::duration, "250ms", "[1ms, 10s]", true},
      {"budget", TunableType::size, "64MiB", "[4KiB, 1GiB]", true},
      {"policy", TunableType::enumeration, "adaptive",
       "one of demand, selective, aggressive, adaptive", true},
      {"verbose", TunableType::boolean, "false", "true or false", true},
      {"slots", TunableType::integer, "4", "[1, 64]", false},
  };
  ASSERT_EQ(listed[0].tunables.size(), std::size(expected));
  for (std::size_t i = 0; i < std::size(expected); ++i) {
    const TunableInfo& t = listed[0].tunables[i];
    EXPECT_EQ(t.spec.name, expected[i].name);
    EXPECT_EQ(t.spec.type, expected[i].type) << t.spec.name;
    EXPECT_EQ(t.text, expected[i].text) << t.spec.name;
    EXPECT_EQ(t.spec.describe_range(), expected[i].range) << t.spec.name;
    EXPECT_EQ(t.spec.runtime, expected[i].runtime) << t.spec.name;
    EXPECT_EQ(t.source, ValueSource::default_value) << t.spec.name;
    EXPECT_FALSE(t.spec.help.empty()) << t.spec.name;
  }
  EXPECT_EQ(listed[0].tunables[3].environment, "DYNAMOS_EVERY_BUDGET");
  EXPECT_EQ(read_back(*host, "budget"), "67108864");
  EXPECT_EQ(read_back(*host, "period"), "250000000");
}

TEST_F(ExtHost, SetChangesWhatTheExtensionReads) {
  make_host();
  ASSERT_TRUE(host->load(EXT_EVERY));
  struct Case {
    const char* key;
    const char* value;
    const char* text;  // canonical
    const char* seen;  // what the extension reads through host->get_*
  };
  const Case cases[] = {
      {"level", "42", "42", "42"},
      {"ratio", "0.75", "0.75", "0.75"},
      {"period", "1.5s", "1500ms", "1500000000"},
      {"budget", "2M", "2MiB", "2097152"},
      {"policy", "selective", "selective", "1"},
      {"verbose", "yes", "true", "1"},
  };
  for (const auto& c : cases) {
    auto r = host->set("every", c.key, c.value);
    ASSERT_TRUE(r) << c.key << ": " << r.error().message();
    EXPECT_EQ(r->text, c.text);
    EXPECT_EQ(r->source, ValueSource::runtime);
    EXPECT_EQ(read_back(*host, c.key), c.seen) << c.key;
  }
  auto r = host->set("every.level = 43");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(read_back(*host, "level"), "43");
  EXPECT_EQ(host->get("every", "level")->text, "43");
}

TEST_F(ExtHost, WrongValuesAreRefusedAndNothingChanges) {
  make_host();
  ASSERT_TRUE(host->load(EXT_EVERY));
  auto before = host->list();
  struct Case {
    const char* key;
    const char* value;
    Errc code;
    std::vector<const char*> says;
  };
  const Case cases[] = {
      {"level", "101", Errc::invalid_argument, {"every.level", "out of range [0, 100]"}},
      {"level", "abc", Errc::invalid_argument, {"every.level", "not an integer", "[0, 100]"}},
      {"ratio", "1.5", Errc::invalid_argument, {"every.ratio", "[0, 1]"}},
      {"period", "5", Errc::invalid_argument, {"every.period", "needs a unit"}},
      {"period", "1min", Errc::invalid_argument, {"every.period", "[1ms, 10s]"}},
      {"budget", "2G", Errc::invalid_argument, {"every.budget", "[4KiB, 1GiB]"}},
      {"budget", "lots", Errc::invalid_argument, {"every.budget", "not a size"}},
      {"policy",
       "lazy",
       Errc::invalid_argument,
       {"every.policy", "one of demand, selective, aggressive, adaptive"}},
      {"verbose", "maybe", Errc::invalid_argument, {"every.verbose", "not a boolean"}},
      {"slots",
       "8",
       Errc::refused,
       {"every.slots", "not changeable at runtime", "DYNAMOS_EVERY_SLOTS"}},
      {"level", "13", Errc::refused, {"every.level", "level 13 is reserved"}},
      {"nosuch", "1", Errc::not_found, {"every has no tunable 'nosuch'", "level, ratio"}},
  };
  for (const auto& c : cases) {
    auto r = host->set("every", c.key, c.value);
    ASSERT_FALSE(r) << c.key << "=" << c.value << " was accepted";
    EXPECT_EQ(r.error().code, c.code) << r.error().message();
    for (const char* s : c.says)
      EXPECT_NE(r.error().message().find(s), std::string::npos)
          << "'" << r.error().message() << "' does not say '" << s << "'";
  }
  EXPECT_FALSE(host->set("other", "level", "1"));
  EXPECT_FALSE(host->set("every.level"));
  auto after = host->list();
  ASSERT_EQ(after.size(), 1u);
  for (std::size_t i = 0; i < after[0].tunables.size(); ++i) {
    EXPECT_EQ(after[0].tunables[i].text, before[0].tunables[i].text);
    EXPECT_EQ(after[0].tunables[i].source, ValueSource::default_value);
  }
  EXPECT_EQ(read_back(*host, "level"), "10");
}

TEST_F(ExtHost, ValuesComeFromRuntimeThenEnvironmentThenConfigThenDefault) {
  write_config(
      "# test config\n"
      "every.level = 30\n"
      "every.ratio = 0.25\n"
      "every.bogus = 1\n");
  env["DYNAMOS_EVERY_LEVEL"] = "20";
  env["DYNAMOS_EVERY_SLOTS"] = "8";
  make_host();
  auto info = host->load(EXT_EVERY);
  ASSERT_TRUE(info) << info.error().message();
  const TunableInfo* level = find(*info, "level");
  EXPECT_EQ(level->text, "20");
  EXPECT_EQ(level->source, ValueSource::environment);
  EXPECT_EQ(level->origin, "DYNAMOS_EVERY_LEVEL");
  const TunableInfo* ratio = find(*info, "ratio");
  EXPECT_EQ(ratio->text, "0.25");
  EXPECT_EQ(ratio->source, ValueSource::config_file);
  EXPECT_EQ(ratio->origin, config_path + ":3");
  EXPECT_EQ(find(*info, "period")->source, ValueSource::default_value);
  EXPECT_EQ(find(*info, "slots")->text, "8");  // fixed at load, from the environment
  EXPECT_TRUE(logged("has no tunable 'bogus'")) << log_text();
  EXPECT_EQ(read_back(*host, "ratio"), "0.25");

  auto set = host->set("every", "level", "40");
  ASSERT_TRUE(set) << set.error().message();
  EXPECT_EQ(set->source, ValueSource::runtime);
  EXPECT_EQ(read_back(*host, "level"), "40");
  auto reset = host->reset("every", "level");
  ASSERT_TRUE(reset) << reset.error().message();
  EXPECT_EQ(reset->text, "20");
  EXPECT_EQ(reset->source, ValueSource::environment);
  EXPECT_EQ(read_back(*host, "level"), "20");
}

TEST_F(ExtHost, BadValueFromEnvironmentOrConfigRefusesTheLoad) {
  env["DYNAMOS_EVERY_BUDGET"] = "2G";
  make_host();
  auto r = host->load(EXT_EVERY);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("DYNAMOS_EVERY_BUDGET"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("[4KiB, 1GiB]"), std::string::npos) << r.error().message();
  EXPECT_TRUE(host->list().empty());

  env.clear();
  write_config("every.policy = sometimes\n");
  make_host();
  r = host->load(EXT_EVERY);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(config_path + ":1"), std::string::npos) << r.error().message();
  EXPECT_TRUE(host->list().empty());
}

TEST_F(ExtHost, MalformedConfigFileIsReportedWhenTheHostIsCreated) {
  write_config("every.level 30\n");
  auto h = ExtensionHost::create(options());
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message().find(config_path + ":1"), std::string::npos) << h.error().message();
}

TEST_F(ExtHost, WrongAbiIsRefusedWithoutCallingIt) {
  make_host();
  // Its v1 entry point aborts the process if called.
  auto r = host->load(EXT_WRONGABI);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::version_mismatch);
  EXPECT_NE(r.error().message().find("built for extension ABI 99, this host speaks ABI 1"),
            std::string::npos)
      << r.error().message();
  EXPECT_TRUE(host->list().empty());
  EXPECT_FALSE(mapped(EXT_WRONGABI));
}

TEST_F(ExtHost, ObjectsThatAreNoExtensionsAreRefused) {
  make_host();
  auto r = host->load(EXT_NOENTRY);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("no entry point dynamos_extension_entry_v1"),
            std::string::npos)
      << r.error().message();

  Dl_info libc{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&std::printf), &libc), 0);
  r = host->load(libc.dli_fname);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not a DynAMOS extension"), std::string::npos)
      << r.error().message();

  r = host->load("/nonexistent/ext.so");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found) << r.error().message();

  std::string text = ::testing::TempDir() + "/dynamos-exthost-not-elf.so";
  std::ofstream(text) << "not an ELF object\n";
  r = host->load(text);
  std::remove(text.c_str());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("load extension " + text), std::string::npos)
      << r.error().message();

  r = host->load(EXT_BADTUNABLE);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("tunable 'budget': default"), std::string::npos)
      << r.error().message();
  EXPECT_TRUE(host->list().empty());
}

TEST_F(ExtHost, FailedInitLeavesTheHostAsItWas) {
  make_host();
  ASSERT_TRUE(host->load(EXT_EVERY));
  auto before = host->list();
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = host->load(EXT_INITFAIL);
    ASSERT_FALSE(r);
    expect_error(r.error(), Errc::refused, {"initialise initfail 1.0", "open /nonexistent/device"});
    EXPECT_FALSE(mapped(EXT_INITFAIL));
  }
  auto after = host->list();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].name, "every");
  EXPECT_FALSE(host->info("initfail"));
  EXPECT_EQ(read_back(*host, "level"), "10");
}

TEST_F(ExtHost, SecondLoadOfTheSameExtensionIsRefused) {
  make_host();
  ASSERT_TRUE(host->load(EXT_EVERY));
  auto r = host->load(EXT_EVERY);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::state);
  EXPECT_NE(r.error().message().find("use upgrade"), std::string::npos) << r.error().message();
  EXPECT_EQ(host->list().size(), 1u);

  // Names are unique per process, not just per host.
  auto other = ExtensionHost::create(options());
  ASSERT_TRUE(other);
  auto r2 = (*other)->load(EXT_EVERY);
  ASSERT_FALSE(r2);
  EXPECT_NE(r2.error().message().find("already loaded in this process"), std::string::npos)
      << r2.error().message();
}

TEST_F(ExtHost, SubjectHooksGetTheSubjectAndReport) {
  make_host();
  ASSERT_TRUE(host->load(EXT_EVERY));
  Subject job;
  job.id = 7;
  job.name = "cg";
  job.pids = {100, 101, 102};
  job.policy = "adaptive";
  auto r = host->tick("every", job);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, R"({"id":7,"name":"cg","pids":3,"policy":"adaptive"})");
  auto missing = host->switch_in("every", job);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::unsupported);
  auto failing = host->call("every", "frobnicate");
  ASSERT_FALSE(failing);
  EXPECT_NE(failing.error().message().find("every.call frobnicate: unknown operation"),
            std::string::npos)
      << failing.error().message();
}

TEST_F(ExtHost, UnloadRemovesTheBuildAndStubsAnswerNotLoaded) {
  make_host();
  ASSERT_TRUE(host->load(EXT_EVERY));
  ASSERT_TRUE(mapped(EXT_EVERY));
  auto hooks = host->hooks("every");
  ASSERT_TRUE(hooks);
  dynamos_ext_buffer reply;
  ASSERT_EQ(hooks->call("get", "level", &reply), 0) << ExtensionHost::last_error();
  EXPECT_EQ(reply.bytes, "10");

  auto r = host->unload("every");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(host->list().empty());
  EXPECT_FALSE(mapped(EXT_EVERY));
  reply.bytes.clear();
  EXPECT_NE(hooks->call("get", "level", &reply), 0);
  EXPECT_NE(ExtensionHost::last_error().find("not loaded"), std::string::npos)
      << ExtensionHost::last_error();
  EXPECT_EQ(host->call("every", "get", "level").error().code, Errc::not_found);
  EXPECT_EQ(host->unload("every").error().code, Errc::not_found);

  // Loading again works, with fresh defaults.
  ASSERT_TRUE(host->load(EXT_EVERY));
  EXPECT_EQ(read_back(*host, "level"), "10");
}

TEST_F(ExtHost, ListingAsJson) {
  make_host();
  ASSERT_TRUE(host->load(EXT_EVERY));
  ASSERT_TRUE(host->set("every", "budget", "2M"));
  std::string json = to_json(*host->info("every"));
  for (
      const char* part :
      {R"({"name":"every","version":"1.0",)", R"("hooks":["tick","call"])",
       R"({"name":"budget","type":"size","value":"2MiB","default":"64MiB","range":"[4KiB, 1GiB]",)",
       R"("runtime":true,"source":"runtime","origin":"","environment":"DYNAMOS_EVERY_BUDGET",)",
       R"("choices":["demand","selective","aggressive","adaptive"])"})
    EXPECT_NE(json.find(part), std::string::npos) << "no " << part << " in " << json;
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST_F(ExtHost, RelativePathsAreRelativeToTheWorkingDirectory) {
  make_host();
  // dlopen would search the library path for a bare file name; the host must not.
  const std::filesystem::path every = EXT_EVERY;
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(every.parent_path());
  auto r = host->load(every.filename().string());
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->path, every.string());
  auto missing = host->load("no_such_extension.so");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found) << missing.error().message();
}

}  // namespace
}  // namespace dynamos::core::testing
